// stat-floor — the least a second `manifest` run must do: list every directory with
// getdents64 and statx every entry relative to its directory's descriptor, nothing else (no
// paths built, no output). docs/inventory.md compares the stage with it.
//
//   cc -O2 -pthread -o /tmp/stat-floor scripts/bench.d/stat-floor.c
//   perf stat -e task-clock /tmp/stat-floor TREE [THREADS [nostat]]
//
// With THREADS > 1 the root's entries are dealt out to the threads in turn; with a third
// argument only the directories are listed (the cost of getdents64 alone).
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
	unsigned long long d_ino;
	long long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int use_stat = 1;

static int dot(const char *name) {
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

// Lists `dfd`, stats what it holds and recurses; with `threads` > 1 only every `threads`-th
// entry (from `index`) is taken. Returns the entries seen.
static long walk(int dfd, int index, int threads) {
	char *buffer = malloc(1 << 16);
	long entries = 0, seen = 0;
	for (;;) {
		long n = syscall(SYS_getdents64, dfd, buffer, 1 << 16);
		if (n <= 0)
			break;
		for (long at = 0; at < n;) {
			struct linux_dirent64 *d = (void *)(buffer + at);
			at += d->d_reclen;
			if (dot(d->d_name) || seen++ % threads != index)
				continue;
			entries++;
			struct statx st;
			if (use_stat)
				statx(dfd, d->d_name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st);
			if (d->d_type == DT_DIR) {
				int sub = openat(dfd, d->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (sub >= 0) {
					entries += walk(sub, 0, 1);
					close(sub);
				}
			}
		}
	}
	free(buffer);
	return entries;
}

struct job {
	const char *root;
	int index, threads;
	long entries;
};

static void *run(void *arg) {
	struct job *job = arg;
	int root = open(job->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		perror(job->root);
		exit(2);
	}
	job->entries = walk(root, job->index, job->threads);
	close(root);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s TREE [THREADS [nostat]]\n", argv[0]);
		return 2;
	}
	int threads = argc > 2 ? atoi(argv[2]) : 1;
	if (threads < 1 || threads > 64)
		threads = 1;
	use_stat = argc <= 3;
	pthread_t ids[64];
	struct job jobs[64];
	long total = 0;
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct job){argv[1], i, threads, 0};
		pthread_create(&ids[i], NULL, run, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(ids[i], NULL);
		total += jobs[i].entries;
	}
	printf("%ld entries\n", total);
	return 0;
}
