/* pfsim validate: page-fault counts of small programs on this machine's kernel.
 *
 * Usage: probe CASE NPAGES [FILE]; prints "min maj" (getrusage deltas around the measured
 * part) on stdout, or "skip REASON" when the kernel cannot be measured.  Cases match
 * src/pfsim/validate/cases.py.  Anonymous regions get MADV_NOHUGEPAGE so that a system
 * with THP "always" or anonymous mTHP still faults once per 4 KiB page.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096L

static volatile long before_min, before_maj;

/* After fork the stack and the data pages are copy-on-write: write them before the first
 * snapshot so that no fault of the probe itself lands between two snapshots. */
static __attribute__((noinline)) void warm_stack(void)
{
	volatile char deep[65536];

	memset((char *)deep, 0, sizeof(deep));
}

static __attribute__((noinline)) void mark(void)
{
	struct rusage r;

	before_min = before_maj = -1;
	warm_stack();
	getrusage(RUSAGE_SELF, &r);
	before_min = r.ru_minflt;
	before_maj = r.ru_majflt;
}

static __attribute__((noinline)) void since(long *min, long *maj)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	*min = r.ru_minflt - before_min;
	*maj = r.ru_majflt - before_maj;
}

static int skip(const char *why)
{
	printf("skip %s: %s\n", why, strerror(errno));
	return 0;
}

static char *anon(long n)
{
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, n * PG, MADV_NOHUGEPAGE);
	return p;
}

static __attribute__((noinline)) long read_all(const volatile char *p, long n)
{
	long s = 0;

	for (long i = 0; i < n; i++)
		s += p[i * PG];
	return s;
}

static __attribute__((noinline)) void write_all(volatile char *p, long n, char v)
{
	for (long i = 0; i < n; i++)
		p[i * PG] = v;
}

/* A cold file of n pages: written, synced, dropped from the page cache, opened read-only. */
static int cold_file(const char *path, long n)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(buf, 'x', sizeof(buf));
	for (long left = n * PG; left > 0;) {
		long k = left < (long)sizeof(buf) ? left : (long)sizeof(buf);

		if (write(fd, buf, k) != k) {
			close(fd);
			return -1;
		}
		left -= k;
	}
	if (fsync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) {
		close(fd);
		return -1;
	}
	close(fd);
	return open(path, O_RDONLY);
}

int main(int argc, char **argv)
{
	long min = 0, maj = 0, n;
	const char *c;
	char *p;
	long sink = 0;

	if (argc < 3)
		return 2;
	c = argv[1];
	n = atol(argv[2]);
	mark();
	since(&min, &maj);
	if (!strncmp(c, "anon", 4) || !strncmp(c, "zero", 4) || !strncmp(c, "fork", 4)) {
		p = anon(n);
		if (!p)
			return skip("mmap of anonymous memory failed");
		if (!strcmp(c, "anon-first-touch")) {
			mark();
			write_all(p, n, 1);
			since(&min, &maj);
		} else if (!strcmp(c, "zero-read-write")) {
			mark();
			sink += read_all(p, n);
			write_all(p, n, 1);
			since(&min, &maj);
		} else {
			int fds[2];
			pid_t pid;
			long got[2];

			write_all(p, n, 1);
			if (pipe(fds))
				return skip("pipe failed");
			int child_reads = !strcmp(c, "fork-child-read");
			int parent_rewrites = !strcmp(c, "fork-parent-rewrite");

			pid = fork();
			if (pid < 0)
				return skip("fork failed");

			if (pid == 0) {
				/* the child gets no PTEs of the file-backed text: fault its code in */
				char mine[1];

				sink += read_all(p, 1);
				write_all(mine, 1, 0);
				mark();
				since(&got[0], &got[1]);
				mark();
				if (child_reads)
					sink += read_all(p, n);
				else
					write_all(p, n, 2);
				since(&got[0], &got[1]);
				if (write(fds[1], got, sizeof(got)) != sizeof(got))
					_exit(1);
				_exit(sink == 12345 ? 3 : 0);
			}
			if (read(fds[0], got, sizeof(got)) != sizeof(got))
				return skip("the child did not report");
			waitpid(pid, NULL, 0);
			min = got[0];
			maj = got[1];
			if (parent_rewrites) {
				mark();
				write_all(p, n, 3);
				since(&min, &maj);
			}
		}
	} else {
		int fd;

		if (argc < 4)
			return 2;
		fd = cold_file(argv[3], n);
		if (fd < 0) {
			unlink(argv[3]);
			return skip("cannot write, sync and drop a test file");
		}
		p = mmap(NULL, n * PG, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			unlink(argv[3]);
			return skip("mmap of the test file failed");
		}
		int hot = !strcmp(c, "file-random-hot");

		if (strcmp(c, "file-seq-cold"))
			madvise(p, n * PG, MADV_RANDOM);
		mark();
		sink += read_all(p, n);
		since(&min, &maj);
		if (hot) {
			mark();
			sink += read_all(p, n);
			since(&min, &maj);
		}
		munmap(p, n * PG);
		close(fd);
		unlink(argv[3]);
	}
	printf("%ld %ld\n", min, maj);
	return sink == 12345 ? 3 : 0;
}
