"""The guest kernel: processes, address spaces, the x86 fault entry and demand paging."""
