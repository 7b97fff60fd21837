"""The host: vCPU threads, second-level page tables, reclaim, swap and async page faults."""
