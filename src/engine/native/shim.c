/*
 * tsswarm-shim: the native helper of the tsswarm container engine.
 *
 *   tsswarm-shim run SPECFILE        create + supervise a container
 *   tsswarm-shim exec SPECFILE       run a process inside a running container
 *   tsswarm-shim whiteouts DIR       convert OCI whiteouts to overlayfs form
 *
 * See README.md in this directory for the exact protocol.
 * Plain C11 + GNU extensions, libc only (built static with musl when possible).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define TSS_MOUNT_ATTR_RDONLY 0x1ULL
#define TSS_CLOSE_RANGE_CLOEXEC (1U << 2)
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#endif
#ifndef PR_CAPBSET_READ
#define PR_CAPBSET_READ 23
#endif
#ifndef PR_CAPBSET_DROP
#define PR_CAPBSET_DROP 24
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#endif
#ifndef PR_CAP_AMBIENT_CLEAR_ALL
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef MS_STRICTATIME
#define MS_STRICTATIME (1 << 24)
#endif

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define RBUF_SIZE (32 * 1024)
#define LBUF_SIZE (16 * 1024)
#define CLIENT_MAX_PENDING (1u << 20)
#define STDIN_MAX_PENDING (1u << 20)
#define FRAME_MAX (1u << 20)

struct tss_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* ------------------------------------------------------------------ */
/* small utilities                                                     */
/* ------------------------------------------------------------------ */

static char g_err[1024];

__attribute__((format(printf, 1, 2))) static int seterr(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_err, sizeof g_err, fmt, ap);
	va_end(ap);
	return -1;
}

/* like seterr but appends ": strerror(errno)" (errno captured first) */
__attribute__((format(printf, 1, 2))) static int syserr(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_err, sizeof g_err, fmt, ap);
	va_end(ap);
	size_t n = strlen(g_err);
	snprintf(g_err + n, sizeof g_err - n, ": %s", strerror(e));
	errno = e;
	return -1;
}

static void oom(void)
{
	static const char m[] = "tsswarm-shim: out of memory\n";
	ssize_t r = write(2, m, sizeof m - 1);
	(void)r;
	_exit(125);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

static void *xmalloc(size_t n) { return xrealloc(NULL, n); }

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom();
	return p;
}

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p = NULL;
	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		oom();
	va_end(ap);
	return p;
}

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = strlen(data);
	ssize_t w = write(fd, data, n);
	int e = errno;
	close(fd);
	if (w != (ssize_t)n) {
		errno = w < 0 ? e : EIO;
		return -1;
	}
	return 0;
}

/* write file atomically: PATH.tmp + rename. No fsync: readers need atomicity, not
 * durability across power loss (a restarted daemon re-derives state), and an fsync on
 * the start and exit paths costs milliseconds. */
static int write_file_atomic(const char *path, const char *data)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(tmp);
		return -1;
	}
	if (write_all(fd, data, strlen(data)) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(tmp);
		errno = e;
		return -1;
	}
	close(fd);
	int r = rename(tmp, path);
	free(tmp);
	return r;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC3339 with nanoseconds, UTC. buf >= 40 bytes */
static void fmt_time(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)ts.tv_nsec);
}

typedef struct {
	char **v;
	int n;
} strlist;

static void sl_push(strlist *l, char *s)
{
	l->v = xrealloc(l->v, (size_t)(l->n + 2) * sizeof *l->v);
	l->v[l->n++] = s;
	l->v[l->n] = NULL;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;
	if (!*s)
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_ul(const char *s, unsigned long *out)
{
	char *end;
	if (!*s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == 0) {
			char c = *s;
			*s = 0;
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				int e = errno;
				free(p);
				errno = e;
				return -1;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return 0;
}

/* close every fd >= 3 except those listed (list terminated by -1) */
static void close_fds_except(const int *keep)
{
	int k[8], nk = 0;
	for (int i = 0; keep[i] != -1 && nk < 8; i++)
		if (keep[i] >= 3)
			k[nk++] = keep[i];
	/* sort */
	for (int i = 0; i < nk; i++)
		for (int j = i + 1; j < nk; j++)
			if (k[j] < k[i]) {
				int t = k[i];
				k[i] = k[j];
				k[j] = t;
			}
	unsigned lo = 3;
	for (int i = 0; i <= nk; i++) {
		unsigned hi = i < nk ? (unsigned)k[i] : ~0U;
		if (hi > lo) {
			if (syscall(__NR_close_range, lo, hi - 1, 0) < 0) {
				unsigned top = i < nk ? hi : 4096;
				for (unsigned f = lo; f < top; f++)
					close((int)f);
			}
		}
		if (i < nk)
			lo = (unsigned)k[i] + 1;
	}
}

static void cloexec_from_3(void)
{
	if (syscall(__NR_close_range, 3U, ~0U, TSS_CLOSE_RANGE_CLOEXEC) == 0)
		return;
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		for (int f = 3; f < 4096; f++)
			fcntl(f, F_SETFD, FD_CLOEXEC);
		return;
	}
	int dfd = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		int f = atoi(de->d_name);
		if (f >= 3 && f != dfd)
			fcntl(f, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
}

/* ------------------------------------------------------------------ */
/* spec                                                                */
/* ------------------------------------------------------------------ */

enum { M_RUN = 1, M_EXEC = 2 };

struct mnt_ent {
	char *src, *dst;
	int ro;
};
struct rl_ent {
	int res;
	struct rlimit rl;
};

static struct spec {
	char *id, *bundle, *rootfs, *upper, *work, *netns, *hostname, *cwd, *user;
	strlist lower, cgprocs, env, args, masks, ros, uidmap, gidmap;
	struct mnt_ent *binds;
	int nbinds;
	struct mnt_ent *devs;
	int ndevs;
	struct rl_ent *rls;
	int nrls;
	int nsflags, cgroupns, joinflags;
	uint64_t caps;
	int nnp, tty, stdin_open, init;
	long long log_max_size;
	long long log_max_files;
	long long target_pid;
} S;

static const char *const cap_names[] = {
    "CHOWN",	       "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER",	    "FSETID",
    "KILL",	       "SETGID",       "SETUID",	  "SETPCAP",	    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",	  "NET_RAW",	    "IPC_LOCK",
    "IPC_OWNER",       "SYS_MODULE",   "SYS_RAWIO",	  "SYS_CHROOT",	    "SYS_PTRACE",
    "SYS_PACCT",       "SYS_ADMIN",    "SYS_BOOT",	  "SYS_NICE",	    "SYS_RESOURCE",
    "SYS_TIME",	       "SYS_TTY_CONFIG", "MKNOD",	  "LEASE",	    "AUDIT_WRITE",
    "AUDIT_CONTROL",   "SETFCAP",      "MAC_OVERRIDE",	  "MAC_ADMIN",	    "SYSLOG",
    "WAKE_ALARM",      "BLOCK_SUSPEND", "AUDIT_READ",	  "PERFMON",	    "BPF",
    "CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof cap_names / sizeof cap_names[0]))

static const struct {
	const char *n;
	int r;
} rl_names[] = {
    {"cpu", RLIMIT_CPU},	   {"fsize", RLIMIT_FSIZE},	  {"data", RLIMIT_DATA},
    {"stack", RLIMIT_STACK},	   {"core", RLIMIT_CORE},	  {"rss", RLIMIT_RSS},
    {"nproc", RLIMIT_NPROC},	   {"nofile", RLIMIT_NOFILE},	  {"memlock", RLIMIT_MEMLOCK},
    {"as", RLIMIT_AS},		   {"locks", RLIMIT_LOCKS},	  {"sigpending", RLIMIT_SIGPENDING},
    {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},	  {"rtprio", RLIMIT_RTPRIO},
    {"rttime", RLIMIT_RTTIME},
};

static int ns_flag(const char *n)
{
	static const struct {
		const char *n;
		int f;
	} t[] = {{"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
		 {"pid", CLONE_NEWPID}, {"net", CLONE_NEWNET}, {"user", CLONE_NEWUSER},
		 {"cgroup", CLONE_NEWCGROUP}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(n, t[i].n))
			return t[i].f;
	return 0;
}

static int cap_index(const char *n)
{
	if (!strncasecmp(n, "CAP_", 4))
		n += 4;
	for (int i = 0; i < NCAPS; i++)
		if (!strcasecmp(n, cap_names[i]))
			return i;
	return -1;
}

/* in-place unescape of \\ \n \t \s */
static int unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		r++;
		switch (*r) {
		case '\\': *w++ = '\\'; break;
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case 's': *w++ = ' '; break;
		default: return -1;
		}
	}
	*w = 0;
	return 0;
}

/* split raw value into exactly `want` space-separated fields, unescaping each */
static int split_fields(char *raw, char **f, int want)
{
	int n = 0;
	char *p = raw;
	for (;;) {
		if (n == want)
			return -1;
		f[n++] = p;
		char *sp = strchr(p, ' ');
		if (!sp)
			break;
		*sp = 0;
		p = sp + 1;
	}
	if (n != want)
		return -1;
	for (int i = 0; i < n; i++)
		if (!*f[i] || unescape(f[i]) < 0)
			return -1;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	if (!strcmp(v, "1") || !strcmp(v, "true"))
		*out = 1;
	else if (!strcmp(v, "0") || !strcmp(v, "false"))
		*out = 0;
	else
		return -1;
	return 0;
}

static int parse_rlim_val(const char *s, rlim_t *out)
{
	long long v;
	if (!strcmp(s, "unlimited")) {
		*out = RLIM_INFINITY;
		return 0;
	}
	if (parse_ll(s, &v) < 0 || v < -1)
		return -1;
	*out = v == -1 ? RLIM_INFINITY : (rlim_t)v;
	return 0;
}

static int spec_kv(char *key, char *raw, int mode)
{
	char *f[3];
	int allowed;
#define KEY(name, modes) (!strcmp(key, name) && ((allowed = (modes)), 1))
#define CHECKMODE()                                                                                \
	do {                                                                                       \
		if (!(allowed & mode))                                                             \
			return seterr("key '%s' is not valid in %s specs", key,                    \
				      mode == M_RUN ? "run" : "exec");                             \
	} while (0)

	/* multi-field keys */
	if (KEY("uidmap", M_RUN) || KEY("gidmap", M_RUN)) {
		CHECKMODE();
		unsigned long a, b, c;
		if (split_fields(raw, f, 3) < 0 || parse_ul(f[0], &a) || parse_ul(f[1], &b) ||
		    parse_ul(f[2], &c) || c == 0)
			return seterr("%s: expected 'IN OUT LEN'", key);
		sl_push(key[0] == 'u' ? &S.uidmap : &S.gidmap, xasprintf("%lu %lu %lu", a, b, c));
		return 0;
	}
	if (KEY("bind", M_RUN)) {
		CHECKMODE();
		if (split_fields(raw, f, 3) < 0 || (strcmp(f[2], "ro") && strcmp(f[2], "rw")))
			return seterr("bind: expected 'SRC DST ro|rw'");
		if (f[1][0] != '/')
			return seterr("bind: destination must be absolute: %s", f[1]);
		S.binds = xrealloc(S.binds, (size_t)(S.nbinds + 1) * sizeof *S.binds);
		S.binds[S.nbinds++] = (struct mnt_ent){f[0], f[1], f[2][1] == 'o'};
		return 0;
	}
	if (KEY("device", M_RUN)) {
		CHECKMODE();
		if (split_fields(raw, f, 2) < 0)
			return seterr("device: expected 'HOSTPATH CTRPATH'");
		if (f[1][0] != '/')
			return seterr("device: container path must be absolute: %s", f[1]);
		S.devs = xrealloc(S.devs, (size_t)(S.ndevs + 1) * sizeof *S.devs);
		S.devs[S.ndevs++] = (struct mnt_ent){f[0], f[1], 0};
		return 0;
	}
	if (KEY("rlimit", M_RUN)) {
		CHECKMODE();
		struct rl_ent e;
		if (split_fields(raw, f, 3) < 0)
			return seterr("rlimit: expected 'NAME SOFT HARD'");
		const char *n = f[0];
		if (!strncasecmp(n, "RLIMIT_", 7))
			n += 7;
		e.res = -1;
		for (size_t i = 0; i < sizeof rl_names / sizeof rl_names[0]; i++)
			if (!strcasecmp(n, rl_names[i].n))
				e.res = rl_names[i].r;
		if (e.res < 0)
			return seterr("rlimit: unknown resource '%s'", f[0]);
		if (parse_rlim_val(f[1], &e.rl.rlim_cur) || parse_rlim_val(f[2], &e.rl.rlim_max))
			return seterr("rlimit: bad value");
		S.rls = xrealloc(S.rls, (size_t)(S.nrls + 1) * sizeof *S.rls);
		S.rls[S.nrls++] = e;
		return 0;
	}

	if (unescape(raw) < 0)
		return seterr("bad escape sequence in value of '%s'", key);
	char *v = raw;
	long long n;

	if (KEY("id", M_RUN | M_EXEC)) {
		CHECKMODE();
		S.id = v;
	} else if (KEY("bundle", M_RUN)) {
		CHECKMODE();
		S.bundle = v;
	} else if (KEY("rootfs", M_RUN)) {
		CHECKMODE();
		S.rootfs = v;
	} else if (KEY("lower", M_RUN)) {
		CHECKMODE();
		sl_push(&S.lower, v);
	} else if (KEY("upper", M_RUN)) {
		CHECKMODE();
		S.upper = v;
	} else if (KEY("work", M_RUN)) {
		CHECKMODE();
		S.work = v;
	} else if (KEY("ns", M_RUN)) {
		CHECKMODE();
		int fl = ns_flag(v);
		if (!fl)
			return seterr("ns: unknown namespace '%s'", v);
		if (fl == CLONE_NEWCGROUP)
			S.cgroupns = 1;
		else
			S.nsflags |= fl;
	} else if (KEY("join", M_EXEC)) {
		CHECKMODE();
		int fl = ns_flag(v);
		if (!fl)
			return seterr("join: unknown namespace '%s'", v);
		S.joinflags |= fl;
	} else if (KEY("netns", M_RUN)) {
		CHECKMODE();
		S.netns = v;
	} else if (KEY("hostname", M_RUN)) {
		CHECKMODE();
		S.hostname = v;
	} else if (KEY("cgroup-procs", M_RUN | M_EXEC)) {
		CHECKMODE();
		sl_push(&S.cgprocs, v);
	} else if (KEY("env", M_RUN | M_EXEC)) {
		CHECKMODE();
		if (!strchr(v, '='))
			return seterr("env: expected K=V");
		sl_push(&S.env, v);
	} else if (KEY("cwd", M_RUN | M_EXEC)) {
		CHECKMODE();
		if (v[0] != '/')
			return seterr("cwd must be absolute: %s", v);
		S.cwd = v;
	} else if (KEY("user", M_RUN | M_EXEC)) {
		CHECKMODE();
		S.user = v;
	} else if (KEY("arg", M_RUN | M_EXEC)) {
		CHECKMODE();
		sl_push(&S.args, v);
	} else if (KEY("cap", M_RUN | M_EXEC)) {
		CHECKMODE();
		if (!strcasecmp(v, "ALL"))
			S.caps = ~0ULL;
		else {
			int c = cap_index(v);
			if (c < 0)
				return seterr("cap: unknown capability '%s'", v);
			S.caps |= 1ULL << c;
		}
	} else if (KEY("no-new-privs", M_RUN | M_EXEC)) {
		CHECKMODE();
		if (parse_bool(v, &S.nnp))
			return seterr("no-new-privs: expected 0 or 1");
	} else if (KEY("tty", M_RUN | M_EXEC)) {
		CHECKMODE();
		if (parse_bool(v, &S.tty))
			return seterr("tty: expected 0 or 1");
	} else if (KEY("stdin", M_RUN)) {
		CHECKMODE();
		if (parse_bool(v, &S.stdin_open))
			return seterr("stdin: expected 0 or 1");
	} else if (KEY("init", M_RUN)) {
		CHECKMODE();
		if (parse_bool(v, &S.init))
			return seterr("init: expected 0 or 1");
	} else if (KEY("mask", M_RUN)) {
		CHECKMODE();
		if (v[0] != '/')
			return seterr("mask: path must be absolute: %s", v);
		sl_push(&S.masks, v);
	} else if (KEY("readonly", M_RUN)) {
		CHECKMODE();
		if (v[0] != '/')
			return seterr("readonly: path must be absolute: %s", v);
		sl_push(&S.ros, v);
	} else if (KEY("log-max-size", M_RUN)) {
		CHECKMODE();
		if (parse_ll(v, &n) || n < 0)
			return seterr("log-max-size: expected a byte count");
		S.log_max_size = n;
	} else if (KEY("log-max-files", M_RUN)) {
		CHECKMODE();
		if (parse_ll(v, &n) || n < 1 || n > 10000)
			return seterr("log-max-files: expected a count >= 1");
		S.log_max_files = n;
	} else if (KEY("target-pid", M_EXEC)) {
		CHECKMODE();
		if (parse_ll(v, &n) || n <= 0 || n > INT_MAX)
			return seterr("target-pid: expected a pid");
		S.target_pid = n;
	} else {
		return seterr("unknown key '%s'", key);
	}
	return 0;
#undef KEY
#undef CHECKMODE
}

static int parse_spec(const char *path, int mode)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return syserr("open spec %s", path);
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = xrealloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return syserr("read spec %s", path);
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	if (memchr(buf, 0, len))
		return seterr("spec %s: contains NUL bytes", path);
	S.log_max_files = 1;
	int ln = 0;
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		ln++;
		if (*line && *line != '#') {
			char *sp = strchr(line, ' ');
			if (!sp)
				return seterr("spec line %d: missing value for '%s'", ln, line);
			*sp = 0;
			if (spec_kv(line, sp + 1, mode) < 0) {
				char tmp[sizeof g_err];
				snprintf(tmp, sizeof tmp, "spec line %d: %.990s", ln, g_err);
				memcpy(g_err, tmp, sizeof g_err);
				return -1;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	/* buf stays allocated: spec strings point into it */
	if (S.args.n == 0)
		return seterr("spec: no 'arg' given");
	return 0;
}

/* ------------------------------------------------------------------ */
/* container-side process setup (shared by run and exec)               */
/* ------------------------------------------------------------------ */

static int g_errfd = -1; /* CLOEXEC error pipe to the supervisor */

__attribute__((noreturn)) static void child_die(int code, const char *msg)
{
	char buf[4 + sizeof g_err];
	size_t n = strlen(msg);
	if (n > sizeof g_err - 1)
		n = sizeof g_err - 1;
	memcpy(buf, &code, 4);
	memcpy(buf + 4, msg, n);
	if (g_errfd >= 0) {
		ssize_t r = write(g_errfd, buf, 4 + n);
		(void)r;
	}
	_exit(code);
}

__attribute__((noreturn, format(printf, 2, 3))) static void child_dief(int code, const char *fmt, ...)
{
	char m[sizeof g_err];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	child_die(code, m);
}

struct uinfo {
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	char *home;
};

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* split a colon-separated line into at most max fields (in place) */
static int colon_split(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

/* Resolve a user spec against /etc/passwd and /etc/group of the current root. */
static int resolve_user(const char *spec, struct uinfo *u)
{
	char *us = xstrdup(spec && *spec ? spec : "0");
	char *gs = strchr(us, ':');
	char *uname = NULL;
	int have_gid = 0, found_user = 0;
	char *line = NULL;
	size_t lcap = 0;
	FILE *fp;

	if (gs)
		*gs++ = 0;
	memset(u, 0, sizeof *u);
	u->home = xstrdup("/");
	int unum = all_digits(us);
	if (unum) {
		unsigned long v;
		if (parse_ul(us, &v) || v > 0xfffffffeUL)
			return seterr("invalid uid %s", us);
		u->uid = (uid_t)v;
	}
	fp = fopen("/etc/passwd", "re");
	if (fp) {
		while (getline(&line, &lcap, fp) > 0) {
			line[strcspn(line, "\n")] = 0;
			char *f[7];
			if (colon_split(line, f, 7) < 7)
				continue;
			unsigned long id, gid;
			if (parse_ul(f[2], &id) || parse_ul(f[3], &gid))
				continue;
			if (unum ? id == u->uid : !strcmp(f[0], us)) {
				u->uid = (uid_t)id;
				u->gid = (gid_t)gid;
				free(u->home);
				u->home = xstrdup(*f[5] ? f[5] : "/");
				uname = xstrdup(f[0]);
				found_user = 1;
				break;
			}
		}
		fclose(fp);
	}
	if (!unum && !found_user) {
		seterr("unable to find user %s: no matching entries in passwd file", us);
		free(line);
		free(us);
		return -1;
	}
	if (gs) {
		if (all_digits(gs)) {
			unsigned long v;
			if (parse_ul(gs, &v) || v > 0xfffffffeUL)
				return seterr("invalid gid %s", gs);
			u->gid = (gid_t)v;
			have_gid = 1;
		}
	}
	fp = fopen("/etc/group", "re");
	if (fp) {
		while (getline(&line, &lcap, fp) > 0) {
			line[strcspn(line, "\n")] = 0;
			char *f[4];
			if (colon_split(line, f, 4) < 4)
				continue;
			unsigned long gid;
			if (parse_ul(f[2], &gid))
				continue;
			if (gs && !have_gid && !strcmp(f[0], gs)) {
				u->gid = (gid_t)gid;
				have_gid = 1;
			}
			if (uname) {
				for (char *m = strtok(f[3], ","); m; m = strtok(NULL, ","))
					if (!strcmp(m, uname)) {
						u->groups = xrealloc(u->groups, (size_t)(u->ngroups + 1) *
											sizeof(gid_t));
						u->groups[u->ngroups++] = (gid_t)gid;
						break;
					}
			}
		}
		fclose(fp);
	}
	free(line);
	if (gs && !have_gid) {
		seterr("unable to find group %s: no matching entries in group file", gs);
		free(us);
		return -1;
	}
	/* like initgroups(): the primary group comes first */
	{
		int have = 0;
		for (int i = 0; i < u->ngroups; i++)
			have |= u->groups[i] == u->gid;
		if (!have) {
			u->groups = xrealloc(u->groups, (size_t)(u->ngroups + 1) * sizeof(gid_t));
			memmove(u->groups + 1, u->groups, (size_t)u->ngroups * sizeof(gid_t));
			u->groups[0] = u->gid;
			u->ngroups++;
		}
	}
	free(uname);
	free(us);
	return 0;
}

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static void reset_signals(void)
{
	sigset_t none;
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* highest capability number known to the kernel (no /proc needed: it may be masked) */
static int cap_last(void)
{
	int last = -1;
	while (last < 63 && prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0)
		last++;
	return last < 0 ? NCAPS - 1 : last;
}

/*
 * Apply identity + privileges: rlimits, bounding set, no_new_privs,
 * setgroups/setgid/setuid, capset, ambient clear. Returns -1 with g_err set.
 */
static int apply_privileges(const struct uinfo *u, int in_userns)
{
	for (int i = 0; i < S.nrls; i++)
		if (setrlimit(S.rls[i].res, &S.rls[i].rl) < 0)
			return syserr("setrlimit %d", S.rls[i].res);

	int last = cap_last();
	uint64_t valid = last >= 63 ? ~0ULL : ((1ULL << (last + 1)) - 1);
	struct {
		uint32_t version;
		int pid;
	} hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
	struct {
		uint32_t eff, perm, inh;
	} data[2];
	/* caps we do not hold (e.g. dropped on the host) cannot be granted: ignore them */
	if (syscall(SYS_capget, &hdr, data) == 0)
		valid &= (uint64_t)data[0].perm | ((uint64_t)data[1].perm << 32);
	uint64_t keep = S.caps & valid;
	for (int c = 0; c <= last; c++)
		if (!(keep & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return syserr("drop capability %d from bounding set", c);

	if (S.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return syserr("prctl(NO_NEW_PRIVS)");

	if (setgroups((size_t)u->ngroups, u->groups) < 0) {
		/* setgroups may be denied inside a user namespace */
		if (!(in_userns && errno == EPERM))
			return syserr("setgroups");
	}
	if (setresgid(u->gid, u->gid, u->gid) < 0)
		return syserr("setgid %u", (unsigned)u->gid);
	if (setresuid(u->uid, u->uid, u->uid) < 0)
		return syserr("setuid %u", (unsigned)u->uid);

	uint64_t set = u->uid == 0 ? keep : 0;
	hdr.version = 0x20080522;
	hdr.pid = 0;
	data[0].eff = data[0].perm = data[0].inh = (uint32_t)set;
	data[1].eff = data[1].perm = data[1].inh = (uint32_t)(set >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return syserr("capset");
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return 0;
}

/* Build the final environment (adds HOME if missing). */
static char **build_env(const struct uinfo *u)
{
	strlist e = {0};
	for (int i = 0; i < S.env.n; i++)
		sl_push(&e, S.env.v[i]);
	if (!env_get(e.v, "HOME"))
		sl_push(&e, xasprintf("HOME=%s", u->home));
	return e.v;
}

/* setsid, controlling tty, stdio, exec with PATH lookup from the container env */
__attribute__((noreturn)) static void do_exec(char **envp, int slave)
{
	char **argv = S.args.v;
	const char *file = argv[0];

	setsid();
	if (slave >= 0) {
		if (ioctl(slave, TIOCSCTTY, 0) < 0) {
			syserr("set controlling terminal");
			child_die(1, g_err);
		}
		dup2(slave, 0);
		dup2(slave, 1);
		dup2(slave, 2);
		if (slave > 2)
			close(slave);
	}
	reset_signals();
	cloexec_from_3();

	if (!*file)
		child_dief(127, "exec: \"\": executable file not found in $PATH");
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		int e = errno;
		if (e == ENOENT)
			child_dief(127, "exec: \"%s\": stat %s: no such file or directory", file, file);
		if (e == EACCES)
			child_dief(126, "exec: \"%s\": permission denied", file);
		child_dief(126, "exec: \"%s\": %s", file, strerror(e));
	}
	const char *path = env_get(envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	int saw_eacces = 0;
	size_t flen = strlen(file);
	char *buf = xmalloc(strlen(path) + flen + 2);
	for (const char *p = path;;) {
		const char *z = strchrnul(p, ':');
		size_t dl = (size_t)(z - p);
		if (dl) {
			memcpy(buf, p, dl);
			buf[dl] = '/';
		} else {
			buf[0] = '.';
			buf[1] = '/';
			dl = 1;
		}
		memcpy(buf + dl + 1, file, flen + 1);
		execve(buf, argv, envp);
		switch (errno) {
		case EACCES:
			saw_eacces = 1;
			/* fallthrough */
		case ENOENT:
		case ENOTDIR:
		case ELOOP:
		case ENAMETOOLONG:
			break;
		default:
			child_dief(126, "exec: \"%s\": %s", buf, strerror(errno));
		}
		if (!*z)
			break;
		p = z + 1;
	}
	if (saw_eacces)
		child_dief(126, "exec: \"%s\": permission denied", file);
	child_dief(127, "exec: \"%s\": executable file not found in $PATH", file);
}

static void noop_handler(int s) { (void)s; }

/* argv area of the shim, to hide the host command line of the init process */
static char *g_argv_start;
static size_t g_argv_len;

/* Tiny init: PID 1 forwards signals to the user process and reaps zombies. */
__attribute__((noreturn)) static void run_init(char **envp, int slave)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD)
			signal(s, noop_handler);
	pid_t pid = fork();
	if (pid < 0) {
		syserr("init: fork");
		child_die(1, g_err);
	}
	if (pid == 0)
		do_exec(envp, slave);
	close(g_errfd);
	g_errfd = -1;
	if (slave >= 0)
		close(slave);
	prctl(PR_SET_NAME, "init", 0, 0, 0);
	if (g_argv_start && g_argv_len > 5) {
		memset(g_argv_start, 0, g_argv_len);
		memcpy(g_argv_start, "init", 4);
	}
	int fd_null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd_null >= 0) {
		dup2(fd_null, 0);
		close(fd_null);
	}
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig == SIGCHLD) {
			int st;
			pid_t p;
			while ((p = waitpid(-1, &st, WNOHANG)) > 0)
				if (p == pid)
					_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			continue;
		}
		kill(pid, sig);
	}
}

/* ------------------------------------------------------------------ */
/* rootfs helpers                                                       */
/* ------------------------------------------------------------------ */

/*
 * Resolve container path `p` below host directory `root`, following
 * symlinks as if `root` were "/" (never escapes root). Returns malloc'd
 * host path or NULL with g_err set.
 */
static char *secure_join(const char *root, const char *p)
{
	size_t rl = strlen(root);
	while (rl > 0 && root[rl - 1] == '/')
		rl--;
	char *cur = xmalloc(PATH_MAX);
	size_t cl = 0;
	char *rem = xstrdup(p);
	char *next = rem;
	int links = 0;
	cur[0] = 0;
	while (*next) {
		while (*next == '/')
			next++;
		if (!*next)
			break;
		char *comp = next;
		char *end = strchr(next, '/');
		size_t len = end ? (size_t)(end - next) : strlen(next);
		next = comp + len;
		if (len == 1 && comp[0] == '.')
			continue;
		if (len == 2 && comp[0] == '.' && comp[1] == '.') {
			while (cl > 0 && cur[cl - 1] != '/')
				cl--;
			if (cl > 0)
				cl--;
			cur[cl] = 0;
			continue;
		}
		if (rl + cl + 1 + len >= PATH_MAX) {
			free(cur);
			free(rem);
			errno = ENAMETOOLONG;
			syserr("path %s", p);
			return NULL;
		}
		size_t save = cl;
		cur[cl++] = '/';
		memcpy(cur + cl, comp, len);
		cl += len;
		cur[cl] = 0;
		char *full = xasprintf("%.*s%s", (int)rl, root, cur);
		struct stat st;
		if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode)) {
			char *lnk = xmalloc(PATH_MAX);
			ssize_t n = readlink(full, lnk, PATH_MAX - 1);
			if (n < 0 || ++links > 40) {
				if (n >= 0)
					errno = ELOOP;
				syserr("resolve %s", p);
				free(lnk);
				free(full);
				free(cur);
				free(rem);
				return NULL;
			}
			lnk[n] = 0;
			cl = save;
			if (lnk[0] == '/')
				cl = 0;
			cur[cl] = 0;
			char *nrem = xasprintf("%s/%s", lnk, next);
			free(lnk);
			free(rem);
			rem = next = nrem;
		}
		free(full);
	}
	char *res = xasprintf("%.*s%s", (int)rl, root, cl ? cur : "/");
	free(cur);
	free(rem);
	return res;
}

static int ensure_target(const char *path, int isdir)
{
	struct stat st;
	if (lstat(path, &st) == 0)
		return 0;
	if (isdir) {
		if (mkdir_p(path, 0755) < 0)
			return syserr("mkdir %s", path);
		return 0;
	}
	char *d = xstrdup(path);
	char *sl = strrchr(d, '/');
	if (sl && sl != d) {
		*sl = 0;
		if (mkdir_p(d, 0755) < 0) {
			free(d);
			return syserr("mkdir %s", path);
		}
	}
	free(d);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return syserr("create %s", path);
	close(fd);
	return 0;
}

/* make a mount read-only (recursively when asked), keeping locked flags */
static int make_ro(const char *path, int recursive)
{
	struct tss_mount_attr a = {.attr_set = TSS_MOUNT_ATTR_RDONLY};
	if (syscall(__NR_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof a) ==
	    0)
		return 0;
	struct statvfs sv;
	unsigned long fl = MS_BIND | MS_REMOUNT | MS_RDONLY;
	if (statvfs(path, &sv) == 0)
		fl |= sv.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME |
				   ST_RELATIME);
	if (mount(path, path, NULL, fl, NULL) < 0)
		return syserr("remount %s read-only", path);
	return 0;
}

static int mnt(const char *src, const char *dst, const char *type, unsigned long fl,
	       const char *data)
{
	if (mount(src, dst, type, fl, data) < 0)
		return syserr("mount %s on %s", type ? type : src, dst);
	return 0;
}

/* inside the child, before pivot_root: everything below S.rootfs */
static int setup_rootfs(void)
{
	const char *R = S.rootfs;
	char *p;
	int in_userns = !!(S.nsflags & CLONE_NEWUSER);

	/* a fresh (unlocked) bind of the rootfs, owned by this mount namespace */
	if (mnt(R, R, NULL, MS_BIND | MS_REC, NULL) < 0)
		return -1;

	/* /proc */
	if (!(p = secure_join(R, "/proc")) || ensure_target(p, 1) < 0 ||
	    mnt("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -1;
	free(p);

	/* /dev */
	if (!(p = secure_join(R, "/dev")) || ensure_target(p, 1) < 0 ||
	    mnt("tmpfs", p, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
		return -1;
	{
		static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
		for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
			char *src = xasprintf("/dev/%s", devs[i]);
			char *dst = xasprintf("%s/%s", p, devs[i]);
			if (ensure_target(dst, 0) < 0 || mnt(src, dst, NULL, MS_BIND, NULL) < 0)
				return -1;
			free(src);
			free(dst);
		}
		char *q = xasprintf("%s/pts", p);
		if (mkdir(q, 0755) < 0 && errno != EEXIST)
			return syserr("mkdir %s", q);
		if (mount("devpts", q, "devpts", MS_NOSUID | MS_NOEXEC,
			  "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
		    mnt("devpts", q, "devpts", MS_NOSUID | MS_NOEXEC,
			"newinstance,ptmxmode=0666,mode=0620") < 0)
			return -1;
		free(q);
		q = xasprintf("%s/ptmx", p);
		if (symlink("pts/ptmx", q) < 0)
			return syserr("symlink %s", q);
		free(q);
		q = xasprintf("%s/shm", p);
		if (mkdir(q, 01777) < 0 && errno != EEXIST)
			return syserr("mkdir %s", q);
		if (mnt("shm", q, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0)
			return -1;
		free(q);
		q = xasprintf("%s/mqueue", p);
		if (mkdir(q, 0755) < 0 && errno != EEXIST)
			return syserr("mkdir %s", q);
		if (mount("mqueue", q, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
			/* mqueue needs an ipc namespace owned by our user namespace */
			if (!(in_userns && (errno == EPERM || errno == EACCES)))
				return syserr("mount mqueue on %s", q);
		}
		free(q);
		static const char *const links[][2] = {{"/proc/self/fd", "fd"},
						      {"/proc/self/fd/0", "stdin"},
						      {"/proc/self/fd/1", "stdout"},
						      {"/proc/self/fd/2", "stderr"}};
		for (size_t i = 0; i < 4; i++) {
			q = xasprintf("%s/%s", p, links[i][1]);
			if (symlink(links[i][0], q) < 0)
				return syserr("symlink %s", q);
			free(q);
		}
	}
	free(p);

	/* /sys read-only */
	if (!(p = secure_join(R, "/sys")) || ensure_target(p, 1) < 0)
		return -1;
	if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		if (mnt("/sys", p, NULL, MS_BIND | MS_REC, NULL) < 0 || make_ro(p, 1) < 0)
			return -1;
	}
	free(p);

	/* bind mounts */
	for (int i = 0; i < S.nbinds; i++) {
		struct stat st;
		if (stat(S.binds[i].src, &st) < 0)
			return syserr("bind source %s", S.binds[i].src);
		if (!(p = secure_join(R, S.binds[i].dst)) || ensure_target(p, S_ISDIR(st.st_mode)) < 0 ||
		    mnt(S.binds[i].src, p, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    (S.binds[i].ro && make_ro(p, 1) < 0))
			return -1;
		free(p);
	}
	/* devices */
	for (int i = 0; i < S.ndevs; i++) {
		struct stat st;
		if (stat(S.devs[i].src, &st) < 0)
			return syserr("device %s", S.devs[i].src);
		if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
			return seterr("device %s: not a device node", S.devs[i].src);
		if (!(p = secure_join(R, S.devs[i].dst)) || ensure_target(p, 0) < 0 ||
		    mnt(S.devs[i].src, p, NULL, MS_BIND, NULL) < 0)
			return -1;
		free(p);
	}
	/* read-only paths */
	for (int i = 0; i < S.ros.n; i++) {
		struct stat st;
		if (!(p = secure_join(R, S.ros.v[i])))
			return -1;
		if (lstat(p, &st) == 0) {
			if (mnt(p, p, NULL, MS_BIND | MS_REC, NULL) < 0 || make_ro(p, 1) < 0)
				return -1;
		}
		free(p);
	}
	/* masked paths */
	for (int i = 0; i < S.masks.n; i++) {
		struct stat st;
		if (!(p = secure_join(R, S.masks.v[i])))
			return -1;
		if (lstat(p, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				if (mnt("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
					"size=0k,mode=755") < 0)
					return -1;
			} else if (mnt("/dev/null", p, NULL, MS_BIND, NULL) < 0) {
				return -1;
			}
		}
		free(p);
	}

	/* pivot_root(".", ".") + detach the old root */
	if (chdir(R) < 0)
		return syserr("chdir %s", R);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return syserr("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return syserr("umount old root");
	if (chdir("/") < 0)
		return syserr("chdir /");
	return 0;
}

static int lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return syserr("socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		close(s);
		return syserr("SIOCGIFFLAGS lo");
	}
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		close(s);
		return syserr("SIOCSIFFLAGS lo");
	}
	close(s);
	return 0;
}

/* open a new pty via /dev/ptmx of the current root; returns master, *slave */
static int open_pty(int *slave)
{
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return syserr("open /dev/ptmx");
	int unlock = 0;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0) {
		close(m);
		return syserr("unlockpt");
	}
	int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		unsigned n;
		char name[32];
		if (ioctl(m, TIOCGPTN, &n) < 0) {
			close(m);
			return syserr("ptsname");
		}
		snprintf(name, sizeof name, "/dev/pts/%u", n);
		s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (s < 0) {
			close(m);
			return syserr("open %s", name);
		}
	}
	*slave = s;
	return m;
}

static int send_fd(int sock, int fd)
{
	char dummy = 'F';
	struct iovec iov = {&dummy, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char dummy;
	struct iovec iov = {&dummy, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {0};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	ssize_t r;
	do
		r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* The last steps before exec, shared by `run` and `exec`: working directory (created if
 * missing), user, environment, terminal ownership, privileges. Dies with fail_code on error. */
static char **prepare_process(int fail_code, int in_userns, int slave)
{
	const char *cwd = S.cwd ? S.cwd : "/";
	if (mkdir_p(cwd, 0755) < 0 || chdir(cwd) < 0) {
		syserr("chdir to cwd (\"%s\")", cwd);
		child_die(fail_code, g_err);
	}
	struct uinfo u;
	if (resolve_user(S.user, &u) < 0)
		child_die(fail_code, g_err);
	char **envp = build_env(&u);
	if (slave >= 0 && fchown(slave, u.uid, (gid_t)-1) < 0) {
		/* best effort */
	}
	if (apply_privileges(&u, in_userns) < 0)
		child_die(fail_code, g_err);
	return envp;
}

/* ------------------------------------------------------------------ */
/* run: child side                                                      */
/* ------------------------------------------------------------------ */

struct run_fds {
	int sync_r, sync_w, err_r, err_w, out_r, out_w, eo_r, eo_w, in_r, in_w, sp_p, sp_c;
};

__attribute__((noreturn)) static void run_child(struct run_fds *f)
{
	char b;
	g_errfd = f->err_w;
	/* container stdio: never inherit the shim's status pipe */
	dup2(f->in_r, 0);
	dup2(f->out_w, 1);
	dup2(f->eo_w, 2);
	int keep[] = {f->sync_r, f->err_w, f->sp_c, -1};
	close_fds_except(keep);

	ssize_t r;
	do
		r = read(f->sync_r, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(1);
	close(f->sync_r);

	int in_userns = !!(S.nsflags & CLONE_NEWUSER);
	if (in_userns) {
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
			syserr("become root in user namespace");
			child_die(1, g_err);
		}
	}
	if (S.cgroupns && unshare(CLONE_NEWCGROUP) < 0) {
		syserr("unshare cgroup namespace");
		child_die(1, g_err);
	}
	if (S.hostname && sethostname(S.hostname, strlen(S.hostname)) < 0) {
		syserr("sethostname");
		child_die(1, g_err);
	}
	if (setup_rootfs() < 0)
		child_die(1, g_err);
	if ((S.nsflags & CLONE_NEWNET) && !S.netns && lo_up() < 0)
		child_die(1, g_err);

	int slave = -1;
	if (S.tty) {
		int m = open_pty(&slave);
		if (m < 0)
			child_die(1, g_err);
		if (send_fd(f->sp_c, m) < 0) {
			syserr("send pty master");
			child_die(1, g_err);
		}
		close(m);
	}
	if (f->sp_c >= 0)
		close(f->sp_c);

	char **envp = prepare_process(1, in_userns, slave);
	if (S.init)
		run_init(envp, slave);
	do_exec(envp, slave);
}

/* ------------------------------------------------------------------ */
/* run: supervisor                                                     */
/* ------------------------------------------------------------------ */

static pid_t g_child = -1;
static int g_status_open = 1;
static int g_in_bundle; /* cwd is the bundle dir: bundle files may be cleaned up */
static char *g_sock_path; /* relative to bundle (cwd) */

static void status_line(const char *kind, const char *msg)
{
	if (!g_status_open)
		return;
	char *m = xasprintf("%s %s\n", kind, msg);
	for (char *p = m; p[1]; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (write_all(1, m, strlen(m)) < 0) {
		/* daemon gone: keep going */
	}
	free(m);
	g_status_open = 0;
}

__attribute__((noreturn)) static void run_fail(int code, const char *msg)
{
	status_line("err", msg);
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		while (waitpid(g_child, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (g_sock_path)
		unlink(g_sock_path);
	if (g_in_bundle)
		unlink("init.pid");
	exit(code);
}

static char *overlay_escape(const char *s)
{
	char *o = xmalloc(strlen(s) * 2 + 1), *w = o;
	for (; *s; s++) {
		if (*s == ':' || *s == ',' || *s == '\\')
			*w++ = '\\';
		*w++ = *s;
	}
	*w = 0;
	return o;
}

static char *build_overlay_opts(const char *strip, int index_off)
{
	size_t sl = strip ? strlen(strip) : 0;
	size_t cap = 64;
	for (int i = 0; i < S.lower.n; i++)
		cap += strlen(S.lower.v[i]) * 2 + 2;
	cap += (S.upper ? strlen(S.upper) * 2 : 0) + (S.work ? strlen(S.work) * 2 : 0) + 32;
	char *o = xmalloc(cap);
	strcpy(o, "lowerdir=");
	for (int i = 0; i < S.lower.n; i++) {
		char *e = overlay_escape(S.lower.v[i] + sl);
		if (i)
			strcat(o, ":");
		strcat(o, e);
		free(e);
	}
	if (S.upper) {
		char *e = overlay_escape(S.upper + sl);
		strcat(o, ",upperdir=");
		strcat(o, e);
		free(e);
	}
	if (S.work) {
		char *e = overlay_escape(S.work + sl);
		strcat(o, ",workdir=");
		strcat(o, e);
		free(e);
	}
	if (index_off)
		strcat(o, ",index=off");
	return o;
}

static int mount_overlay(void)
{
	if (S.lower.n == 0) {
		/* no layers: use rootfs as-is */
		return mnt(S.rootfs, S.rootfs, NULL, MS_BIND | MS_REC, NULL);
	}
	if (!!S.upper != !!S.work)
		return seterr("overlay: upper and work must be given together");
	/* long option strings (many layers): use paths relative to a common parent */
	char *prefix = NULL;
	char *o = build_overlay_opts(NULL, 1);
	if (strlen(o) > 3800) {
		prefix = xstrdup(S.lower.v[0]);
		size_t pl = strlen(prefix);
		const char *all[2] = {S.upper, S.work};
		for (int i = 0; i < S.lower.n + 2; i++) {
			const char *q = i < S.lower.n ? S.lower.v[i] : all[i - S.lower.n];
			if (!q)
				continue;
			size_t k = 0;
			while (k < pl && prefix[k] == q[k])
				k++;
			pl = k;
		}
		while (pl > 0 && prefix[pl - 1] != '/')
			pl--;
		prefix[pl] = 0;
		if (pl > 1) {
			if (chdir(prefix) < 0)
				return syserr("chdir %s", prefix);
			free(o);
			o = build_overlay_opts(prefix, 1);
		}
	}
	int r = mount("overlay", S.rootfs, "overlay", 0, o);
	if (r < 0 && errno == EINVAL) {
		free(o);
		o = build_overlay_opts(prefix && strlen(prefix) > 1 ? prefix : NULL, 0);
		r = mount("overlay", S.rootfs, "overlay", 0, o);
	}
	if (r < 0)
		syserr("mount overlay on %s", S.rootfs);
	free(o);
	free(prefix);
	if (chdir(S.bundle) < 0 && r == 0)
		return syserr("chdir %s", S.bundle);
	return r;
}

/* ---- log writer ---- */
static int g_logfd = -1;
static long long g_logsize;
static char *g_lbuf;
static size_t g_llen;

static void log_flush(void)
{
	if (g_llen && g_logfd >= 0)
		write_all(g_logfd, g_lbuf, g_llen);
	g_llen = 0;
}

static void log_put(const char *p, size_t n)
{
	g_logsize += (long long)n;
	while (n) {
		if (g_llen == LBUF_SIZE)
			log_flush();
		size_t k = LBUF_SIZE - g_llen;
		if (k > n)
			k = n;
		memcpy(g_lbuf + g_llen, p, k);
		g_llen += k;
		p += k;
		n -= k;
	}
}

static void log_open(void)
{
	g_logfd = open("container.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	struct stat st;
	g_logsize = (g_logfd >= 0 && fstat(g_logfd, &st) == 0) ? st.st_size : 0;
}

static void log_rotate(void)
{
	log_flush();
	if (g_logfd >= 0)
		close(g_logfd);
	long long keep = S.log_max_files >= 2 ? S.log_max_files - 1 : 1;
	char a[64], b[64];
	for (long long i = keep - 1; i >= 1; i--) {
		snprintf(a, sizeof a, "container.log.%lld", i);
		snprintf(b, sizeof b, "container.log.%lld", i + 1);
		rename(a, b);
	}
	rename("container.log", "container.log.1");
	g_logfd = open("container.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
	g_logsize = 0;
}

/* length of a valid UTF-8 sequence at p, 0 if invalid */
static int utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0], min;
	int len;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		len = 2, min = 0x80, c &= 0x1F;
	else if ((c & 0xF0) == 0xE0)
		len = 3, min = 0x800, c &= 0x0F;
	else if ((c & 0xF8) == 0xF0)
		len = 4, min = 0x10000, c &= 0x07;
	else
		return 0;
	if (n < (size_t)len)
		return 0;
	for (int i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	return len;
}

static void log_json_escaped(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0; /* start of pending raw run */
	size_t i = 0;
	char esc[8];
	while (i < n) {
		unsigned c = p[i];
		const char *rep = NULL;
		size_t rl = 0, adv = 1;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			int l = utf8_len(p + i, n - i);
			if (l > 0) {
				i += (size_t)l;
				continue;
			}
			rep = "\\ufffd";
			rl = 6;
		} else if (c == '"') {
			rep = "\\\"", rl = 2;
		} else if (c == '\\') {
			rep = "\\\\", rl = 2;
		} else if (c == '\n') {
			rep = "\\n", rl = 2;
		} else if (c == '\r') {
			rep = "\\r", rl = 2;
		} else if (c == '\t') {
			rep = "\\t", rl = 2;
		} else {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			rep = esc, rl = 6;
		}
		if (i > run)
			log_put(s + run, i - run);
		log_put(rep, rl);
		i += adv;
		run = i;
	}
	if (n > run)
		log_put(s + run, n - run);
}

static void log_chunk(int stream, const char *d, size_t n)
{
	char ts[48];
	fmt_time(ts, sizeof ts);
	const char *sname = stream == 2 ? "stderr" : "stdout";
	while (n) {
		const char *nl = memchr(d, '\n', n);
		size_t l = nl ? (size_t)(nl - d) + 1 : n;
		log_put("{\"log\":\"", 8);
		log_json_escaped(d, l);
		log_put("\",\"stream\":\"", 12);
		log_put(sname, 6);
		log_put("\",\"time\":\"", 10);
		log_put(ts, strlen(ts));
		log_put("\"}\n", 3);
		if (S.log_max_size > 0 && g_logsize >= S.log_max_size)
			log_rotate();
		d += l;
		n -= l;
	}
	log_flush();
}

/* ---- ctl.sock clients ---- */
struct client {
	int fd;
	int mode; /* 0 = awaiting mode byte, 'W', 'A' */
	int dead;
	unsigned char hdr[5];
	int hlen;
	uint32_t rem;
	unsigned char pl[4];
	int pllen;
	char *ob;
	size_t olen, ooff;
};

static struct client **g_cl;
static int g_ncl;
static char *g_rbuf;

/* stdin plumbing */
static int g_in_fd = -1; /* pipe write end (non-tty) or master (tty) */
static char *g_sbuf;
static size_t g_slen;
static int g_stdin_close_req;
static int g_master = -1;

static void client_flush(struct client *c)
{
	while (c->ooff < c->olen) {
		ssize_t w = write(c->fd, c->ob + c->ooff, c->olen - c->ooff);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				c->dead = 1;
			break;
		}
		c->ooff += (size_t)w;
	}
	if (c->ooff == c->olen) {
		free(c->ob);
		c->ob = NULL;
		c->olen = c->ooff = 0;
	}
}

static void client_queue(struct client *c, int stream, const char *d, size_t n)
{
	if (c->dead)
		return;
	if (c->olen - c->ooff + n + 5 > CLIENT_MAX_PENDING) {
		c->dead = 1; /* too slow: drop it, never block the container */
		return;
	}
	if (c->ooff) {
		memmove(c->ob, c->ob + c->ooff, c->olen - c->ooff);
		c->olen -= c->ooff;
		c->ooff = 0;
	}
	c->ob = xrealloc(c->ob, c->olen + n + 5);
	unsigned char *h = (unsigned char *)c->ob + c->olen;
	h[0] = (unsigned char)stream;
	h[1] = (unsigned char)(n >> 24);
	h[2] = (unsigned char)(n >> 16);
	h[3] = (unsigned char)(n >> 8);
	h[4] = (unsigned char)n;
	memcpy(c->ob + c->olen + 5, d, n);
	c->olen += n + 5;
	client_flush(c);
}

static void on_output(int stream, const char *d, size_t n)
{
	log_chunk(stream, d, n);
	for (int i = 0; i < g_ncl; i++)
		if (g_cl[i]->mode == 'A')
			client_queue(g_cl[i], stream, d, n);
}

static void stdin_close_now(void)
{
	if (S.tty)
		return; /* closing stdin is a no-op for a tty */
	if (g_in_fd >= 0)
		close(g_in_fd);
	g_in_fd = -1;
	free(g_sbuf);
	g_sbuf = NULL;
	g_slen = 0;
}

static void stdin_flush(void)
{
	size_t off = 0;
	while (g_in_fd >= 0 && off < g_slen) {
		ssize_t w = write(g_in_fd, g_sbuf + off, g_slen - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				/* reader gone */
				off = g_slen;
				if (!S.tty) {
					close(g_in_fd);
					g_in_fd = -1;
				}
			}
			break;
		}
		off += (size_t)w;
	}
	if (off) {
		memmove(g_sbuf, g_sbuf + off, g_slen - off);
		g_slen -= off;
	}
	if (!g_slen) {
		free(g_sbuf);
		g_sbuf = NULL;
		if (g_stdin_close_req) {
			g_stdin_close_req = 0;
			stdin_close_now();
		}
	}
}

static void stdin_append(const char *d, size_t n)
{
	if (!S.stdin_open || g_in_fd < 0 || g_stdin_close_req)
		return;
	g_sbuf = xrealloc(g_sbuf, g_slen + n);
	memcpy(g_sbuf + g_slen, d, n);
	g_slen += n;
	stdin_flush();
}

static void frame_done(struct client *c)
{
	int type = c->hdr[0];
	if (type == 1 && c->pllen >= 4 && g_master >= 0) {
		struct winsize ws = {0};
		ws.ws_row = (unsigned short)((c->pl[0] << 8) | c->pl[1]);
		ws.ws_col = (unsigned short)((c->pl[2] << 8) | c->pl[3]);
		ioctl(g_master, TIOCSWINSZ, &ws);
	} else if (type == 2 && S.stdin_open) {
		if (g_slen)
			g_stdin_close_req = 1;
		else
			stdin_close_now();
	}
	c->hlen = 0;
	c->pllen = 0;
	c->rem = 0;
}

static void client_read(struct client *c)
{
	ssize_t n = read(c->fd, g_rbuf, RBUF_SIZE);
	if (n < 0) {
		if (errno != EINTR && errno != EAGAIN)
			c->dead = 1;
		return;
	}
	if (n == 0) {
		c->dead = 1;
		return;
	}
	const unsigned char *b = (const unsigned char *)g_rbuf;
	size_t i = 0, len = (size_t)n;
	while (i < len && !c->dead) {
		if (!c->mode) {
			int m = b[i++];
			if (m != 'W' && m != 'A')
				c->dead = 1;
			c->mode = m;
			continue;
		}
		if (c->mode == 'W')
			break; /* ignore anything else */
		if (c->hlen < 5) {
			c->hdr[c->hlen++] = b[i++];
			if (c->hlen == 5) {
				c->rem = ((uint32_t)c->hdr[1] << 24) | ((uint32_t)c->hdr[2] << 16) |
					 ((uint32_t)c->hdr[3] << 8) | c->hdr[4];
				if (c->rem > FRAME_MAX)
					c->dead = 1;
				else if (c->rem == 0)
					frame_done(c);
			}
			continue;
		}
		size_t k = len - i;
		if (k > c->rem)
			k = c->rem;
		if (c->hdr[0] == 0)
			stdin_append((const char *)b + i, k);
		else if (c->hdr[0] == 1)
			for (size_t j = 0; j < k; j++)
				if (c->pllen < 4)
					c->pl[c->pllen++] = b[i + j];
		i += k;
		c->rem -= (uint32_t)k;
		if (!c->rem)
			frame_done(c);
	}
}

static void client_free(struct client *c)
{
	close(c->fd);
	free(c->ob);
	free(c);
}

static int g_lfd = -1;

static void accept_clients(void)
{
	for (;;) {
		int fd = accept4(g_lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct client *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			return;
		}
		c->fd = fd;
		g_cl = xrealloc(g_cl, (size_t)(g_ncl + 1) * sizeof *g_cl);
		g_cl[g_ncl++] = c;
	}
}

static void reap_dead_clients(void)
{
	int j = 0;
	for (int i = 0; i < g_ncl; i++) {
		if (g_cl[i]->dead)
			client_free(g_cl[i]);
		else
			g_cl[j++] = g_cl[i];
	}
	g_ncl = j;
	if (!g_ncl) {
		free(g_cl);
		g_cl = NULL;
	}
}

static int make_listener(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	g_sock_path = "ctl.sock";
	strcpy(sa.sun_path, g_sock_path);
	unlink(g_sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return syserr("socket");
	mode_t old = umask(077);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		syserr("bind/listen %s/ctl.sock", S.bundle);
		close(fd);
		return -1;
	}
	return fd;
}

static int write_pid_to(const char *path, pid_t pid)
{
	char b[24];
	snprintf(b, sizeof b, "%d", (int)pid);
	if (write_file(path, b) < 0)
		return syserr("write %s", path);
	return 0;
}

static int write_idmaps(pid_t pid)
{
	char path[64], *buf;
	size_t n;
	for (int pass = 0; pass < 2; pass++) {
		strlist *l = pass ? &S.gidmap : &S.uidmap;
		n = 1;
		for (int i = 0; i < l->n; i++)
			n += strlen(l->v[i]) + 1;
		buf = xmalloc(n);
		buf[0] = 0;
		for (int i = 0; i < l->n; i++) {
			strcat(buf, l->v[i]);
			strcat(buf, "\n");
		}
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, pass ? "gid_map" : "uid_map");
		int r = write_file(path, buf);
		if (r < 0 && pass && errno == EPERM) {
			/* only needed when we lack CAP_SETGID in the parent namespace */
			char sg[64];
			snprintf(sg, sizeof sg, "/proc/%d/setgroups", (int)pid);
			write_file(sg, "deny");
			r = write_file(path, buf);
		}
		free(buf);
		if (r < 0)
			return syserr("write %s", path);
	}
	return 0;
}

static int run_main(const char *specfile)
{
	{
		int keep[] = {-1};
		close_fds_except(keep); /* never hold fds leaked by the spawner */
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	if (parse_spec(specfile, M_RUN) < 0)
		run_fail(1, g_err);
	if (!S.bundle || !S.rootfs)
		run_fail(1, "spec: 'bundle' and 'rootfs' are required");
	{
		char *b = realpath(S.bundle, NULL), *r = realpath(S.rootfs, NULL);
		if (!b) {
			syserr("bundle %s", S.bundle);
			run_fail(1, g_err);
		}
		if (!r) {
			syserr("rootfs %s", S.rootfs);
			run_fail(1, g_err);
		}
		S.bundle = b;
		S.rootfs = r;
	}
	if ((S.nsflags & CLONE_NEWUSER) && (!S.uidmap.n || !S.gidmap.n))
		run_fail(1, "spec: 'ns user' requires uidmap and gidmap");
	if (S.hostname && !(S.nsflags & CLONE_NEWUTS))
		run_fail(1, "spec: 'hostname' requires 'ns uts'");
	if (chdir(S.bundle) < 0) {
		syserr("chdir %s", S.bundle);
		run_fail(1, g_err);
	}
	g_in_bundle = 1;
	unlink("exit.json");
	unlink("init.pid");

	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	/* signals handled through signalfd; blocked before clone so none is lost */
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGCHLD);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGQUIT);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGUSR2);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		syserr("signalfd");
		run_fail(1, g_err);
	}

	/* private mount namespace for the shim itself */
	if (unshare(CLONE_NEWNS) < 0) {
		syserr("unshare mount namespace");
		run_fail(1, g_err);
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		syserr("make / rprivate");
		run_fail(1, g_err);
	}
	if (mount_overlay() < 0)
		run_fail(1, g_err);

	/* mount points that must exist (created here as host root) */
	{
		static const char *const mp[] = {"/proc", "/dev", "/sys"};
		for (int i = 0; i < 4; i++) {
			const char *cp = i < 3 ? mp[i] : S.cwd;
			if (!cp)
				continue;
			char *p = secure_join(S.rootfs, cp);
			if (!p || ensure_target(p, 1) < 0)
				run_fail(1, g_err);
			free(p);
		}
	}

	if (S.netns) {
		int nfd = open(S.netns, O_RDONLY | O_CLOEXEC);
		if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
			syserr("join netns %s", S.netns);
			run_fail(1, g_err);
		}
		close(nfd);
		S.nsflags &= ~CLONE_NEWNET;
	}

	log_open();
	if (g_logfd < 0) {
		syserr("open %s/container.log", S.bundle);
		run_fail(1, g_err);
	}
	g_lfd = make_listener();
	if (g_lfd < 0)
		run_fail(1, g_err);

	struct run_fds f;
	int p[2];
	memset(&f, -1, sizeof f);
#define PIPE(r, w)                                                                                 \
	do {                                                                                       \
		if (pipe2(p, O_CLOEXEC) < 0) {                                                     \
			syserr("pipe");                                                            \
			run_fail(1, g_err);                                                        \
		}                                                                                  \
		r = p[0];                                                                          \
		w = p[1];                                                                          \
	} while (0)
	PIPE(f.sync_r, f.sync_w);
	PIPE(f.err_r, f.err_w);
	PIPE(f.out_r, f.out_w);
	PIPE(f.eo_r, f.eo_w);
	if (S.stdin_open && !S.tty) {
		PIPE(f.in_r, f.in_w);
	} else {
		f.in_r = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (f.in_r < 0) {
			syserr("open /dev/null");
			run_fail(1, g_err);
		}
	}
	if (S.tty) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
			syserr("socketpair");
			run_fail(1, g_err);
		}
		f.sp_p = p[0];
		f.sp_c = p[1];
	}
#undef PIPE

	int flags = S.nsflags | CLONE_NEWNS;
	g_child = (pid_t)syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), NULL, NULL, NULL, NULL);
	if (g_child < 0) {
		g_child = -1;
		syserr("clone");
		run_fail(1, g_err);
	}
	if (g_child == 0)
		run_child(&f);

	close(f.sync_r);
	close(f.err_w);
	close(f.out_w);
	close(f.eo_w);
	close(f.in_r);
	if (f.sp_c >= 0)
		close(f.sp_c);

	for (int i = 0; i < S.cgprocs.n; i++)
		if (write_pid_to(S.cgprocs.v[i], g_child) < 0)
			run_fail(1, g_err);
	if ((flags & CLONE_NEWUSER) && write_idmaps(g_child) < 0)
		run_fail(1, g_err);
	if (write(f.sync_w, "1", 1) != 1) {
		syserr("release container process");
		run_fail(1, g_err);
	}
	close(f.sync_w);

	if (S.tty) {
		g_master = recv_fd(f.sp_p);
		close(f.sp_p);
	}
	/* exec result: EOF = success (CLOEXEC), otherwise code + message */
	{
		char eb[4 + sizeof g_err + 1];
		size_t el = 0;
		for (;;) {
			ssize_t r = read(f.err_r, eb + el, sizeof eb - 1 - el);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			el += (size_t)r;
			if (el >= sizeof eb - 1)
				break;
		}
		close(f.err_r);
		if (el >= 4) {
			int code;
			memcpy(&code, eb, 4);
			eb[el] = 0;
			run_fail(code == 126 || code == 127 ? code : 1, eb + 4);
		}
		if (S.tty && g_master < 0)
			run_fail(1, "container process did not provide a pty");
	}

	{
		char b[24];
		snprintf(b, sizeof b, "%d\n", (int)g_child);
		if (write_file_atomic("init.pid", b) < 0) {
			syserr("write init.pid");
			run_fail(1, g_err);
		}
		snprintf(b, sizeof b, "%d", (int)g_child);
		status_line("ok", b);
	}
	{
		int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nfd >= 0) {
			dup2(nfd, 0);
			dup2(nfd, 1);
			dup2(nfd, 2);
			close(nfd);
		}
	}

	/* ---------------- supervision loop ---------------- */
	g_rbuf = xmalloc(RBUF_SIZE);
	g_lbuf = xmalloc(LBUF_SIZE);
	int out_fd, err_fd;
	if (S.tty) {
		out_fd = g_master;
		err_fd = -1;
		close(f.out_r);
		close(f.eo_r);
		set_nonblock(g_master);
		if (S.stdin_open)
			g_in_fd = g_master;
	} else {
		out_fd = f.out_r;
		err_fd = f.eo_r;
		set_nonblock(out_fd);
		set_nonblock(err_fd);
		g_in_fd = f.in_w;
		if (g_in_fd >= 0)
			set_nonblock(g_in_fd);
	}
	int exited = 0, exit_code = 0, exit_sig = 0;
	char finished[48] = "";
	long long deadline = 0;
	struct pollfd *pf = NULL;
	int pfcap = 0;

	for (;;) {
		if (exited && ((out_fd < 0 && err_fd < 0) || now_ms() >= deadline))
			break;
		int need = 5 + g_ncl;
		if (need > pfcap)
			pf = xrealloc(pf, (size_t)(pfcap = need + 4) * sizeof *pf);
		int np = 0;
		pf[np++] = (struct pollfd){sfd, POLLIN, 0};
		pf[np++] = (struct pollfd){g_lfd, POLLIN, 0};
		pf[np++] = (struct pollfd){out_fd, POLLIN, 0};
		pf[np++] = (struct pollfd){err_fd, POLLIN, 0};
		pf[np++] = (struct pollfd){(g_slen && g_in_fd >= 0) ? g_in_fd : -1, POLLOUT, 0};
		for (int i = 0; i < g_ncl; i++) {
			struct client *c = g_cl[i];
			short ev = 0;
			if (!(c->mode == 'A' && g_slen > STDIN_MAX_PENDING))
				ev |= POLLIN;
			if (c->olen > c->ooff)
				ev |= POLLOUT;
			pf[np++] = (struct pollfd){c->fd, ev, 0};
		}
		int timeout = -1;
		if (exited) {
			long long left = deadline - now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		int nr = poll(pf, (nfds_t)np, timeout);
		if (nr < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* output first, so nothing is lost before exit handling */
		for (int k = 2; k <= 3; k++) {
			int *fdp = k == 2 ? &out_fd : &err_fd;
			if (*fdp < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(*fdp, g_rbuf, RBUF_SIZE);
			if (r > 0)
				on_output(k == 2 ? 1 : 2, g_rbuf, (size_t)r);
			else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				if (*fdp != g_master)
					close(*fdp);
				*fdp = -1;
			}
		}
		if (pf[4].revents)
			stdin_flush();
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo != SIGCHLD && !exited)
					kill(g_child, (int)si.ssi_signo);
			}
			int st;
			pid_t w;
			while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
				if (w == g_child && !exited) {
					exited = 1;
					if (WIFSIGNALED(st)) {
						exit_sig = WTERMSIG(st);
						exit_code = 128 + exit_sig;
					} else {
						exit_code = WEXITSTATUS(st);
					}
					fmt_time(finished, sizeof finished);
					deadline = now_ms() + 2000;
				}
			}
		}
		if (pf[1].revents & POLLIN)
			accept_clients();
		for (int i = 0; i < g_ncl && 5 + i < np; i++) {
			struct client *c = g_cl[i];
			short re = pf[5 + i].revents;
			if (pf[5 + i].fd != c->fd)
				continue;
			if (re & POLLOUT)
				client_flush(c);
			if (re & POLLIN)
				client_read(c);
			else if (re & (POLLHUP | POLLERR))
				c->dead = 1;
		}
		reap_dead_clients();
	}

	/* ---------------- container exited ---------------- */
	log_flush();
	{
		char *j = xasprintf("{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"}\n", exit_code,
				    exit_sig, finished);
		write_file_atomic("exit.json", j);
		free(j);
	}
	/* give attach clients up to 1 s to receive remaining output */
	long long fl_deadline = now_ms() + 1000;
	for (;;) {
		int np = 0;
		for (int i = 0; i < g_ncl; i++)
			if (g_cl[i]->olen > g_cl[i]->ooff && !g_cl[i]->dead)
				pf[np++] = (struct pollfd){g_cl[i]->fd, POLLOUT, 0};
		long long left = fl_deadline - now_ms();
		if (!np || left <= 0)
			break;
		if (poll(pf, (nfds_t)np, (int)left) <= 0)
			break;
		for (int i = 0; i < g_ncl; i++)
			if (g_cl[i]->olen > g_cl[i]->ooff)
				client_flush(g_cl[i]);
	}
	for (int i = 0; i < g_ncl; i++)
		client_free(g_cl[i]);
	g_ncl = 0;
	close(g_lfd);
	unlink(g_sock_path);
	return 0;
}

/* ------------------------------------------------------------------ */
/* exec                                                                 */
/* ------------------------------------------------------------------ */

/* read "resize ROWS COLS\n" lines from fd 3; returns 0 when fd 3 is closed */
static int ctl_read(int master, char *ctl, size_t *ctll, size_t cap)
{
	ssize_t r = read(3, ctl + *ctll, cap - 1 - *ctll);
	if (r <= 0)
		return r < 0 && (errno == EAGAIN || errno == EINTR);
	*ctll += (size_t)r;
	char *nl;
	while ((nl = memchr(ctl, '\n', *ctll))) {
		*nl = 0;
		unsigned rows, cols;
		if (sscanf(ctl, "resize %u %u", &rows, &cols) == 2) {
			struct winsize ws = {0};
			ws.ws_row = (unsigned short)rows;
			ws.ws_col = (unsigned short)cols;
			ioctl(master, TIOCSWINSZ, &ws);
		}
		size_t used = (size_t)(nl - ctl) + 1;
		memmove(ctl, nl + 1, *ctll - used);
		*ctll -= used;
	}
	if (*ctll == cap - 1)
		*ctll = 0; /* overlong garbage line */
	return 1;
}

__attribute__((noreturn)) static void exec_fail(int code, const char *msg)
{
	dprintf(2, "tsswarm: %s\n", msg);
	exit(code);
}

static int exec_main(const char *specfile)
{
	{
		int keep[] = {3, -1}; /* fd 3: optional resize channel */
		close_fds_except(keep);
	}
	signal(SIGPIPE, SIG_IGN);
	if (parse_spec(specfile, M_EXEC) < 0)
		exec_fail(125, g_err);
	if (!S.target_pid)
		exec_fail(125, "spec: 'target-pid' is required");
	pid_t tp = (pid_t)S.target_pid;

	/* cgroup.procs are opened now (host view, full privileges) and written after fork */
	int *cgfd = xmalloc(sizeof(int) * (size_t)(S.cgprocs.n + 1));
	for (int i = 0; i < S.cgprocs.n; i++) {
		cgfd[i] = open(S.cgprocs.v[i], O_WRONLY | O_CLOEXEC);
		if (cgfd[i] < 0) {
			syserr("open %s", S.cgprocs.v[i]);
			exec_fail(125, g_err);
		}
	}
	static const struct {
		int flag;
		const char *name;
	} order[] = {{CLONE_NEWUSER, "user"}, {CLONE_NEWIPC, "ipc"},	   {CLONE_NEWUTS, "uts"},
		     {CLONE_NEWNET, "net"},   {CLONE_NEWPID, "pid"},	   {CLONE_NEWCGROUP, "cgroup"},
		     {CLONE_NEWNS, "mnt"}};
	int nsfd[7];
	int joined_user = 0;
	{
		char path[64];
		snprintf(path, sizeof path, "/proc/%d", (int)tp);
		struct stat st;
		if (stat(path, &st) < 0) {
			char m[96];
			snprintf(m, sizeof m, "container process %d not found", (int)tp);
			exec_fail(125, m);
		}
	}
	for (int i = 0; i < 7; i++) {
		nsfd[i] = -1;
		if (!(S.joinflags & order[i].flag))
			continue;
		char path[64], self[64];
		struct stat a, b;
		snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)tp, order[i].name);
		snprintf(self, sizeof self, "/proc/self/ns/%s", order[i].name);
		nsfd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd[i] < 0) {
			syserr("open %s", path);
			exec_fail(125, g_err);
		}
		if (fstat(nsfd[i], &a) == 0 && stat(self, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev) {
			close(nsfd[i]); /* already there (setns to own userns fails) */
			nsfd[i] = -1;
		}
	}
	for (int i = 0; i < 7; i++) {
		if (nsfd[i] < 0)
			continue;
		if (setns(nsfd[i], order[i].flag) < 0) {
			syserr("setns %s", order[i].name);
			exec_fail(125, g_err);
		}
		if (order[i].flag == CLONE_NEWUSER)
			joined_user = 1;
		close(nsfd[i]);
	}
	if (joined_user) {
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
			syserr("become root in user namespace");
			exec_fail(125, g_err);
		}
	}

	int master = -1, slave = -1;
	if (S.tty) {
		master = open_pty(&slave);
		if (master < 0)
			exec_fail(125, g_err);
	}
	int sp[2], ep[2];
	if (pipe2(sp, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		syserr("pipe");
		exec_fail(125, g_err);
	}
	sigset_t ss;
	sigemptyset(&ss);
	int fwd[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, 0};
	sigaddset(&ss, SIGCHLD);
	for (int i = 0; fwd[i]; i++)
		sigaddset(&ss, fwd[i]);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);

	pid_t pid = fork();
	if (pid < 0) {
		syserr("fork");
		exec_fail(125, g_err);
	}
	if (pid == 0) {
		char b;
		g_errfd = ep[1];
		close(ep[0]);
		close(sp[1]);
		if (read(sp[0], &b, 1) != 1)
			_exit(125);
		close(sp[0]);
		if (master >= 0)
			close(master);
		char **envp = prepare_process(126, joined_user, slave);
		do_exec(envp, slave);
	}
	close(sp[0]);
	close(ep[1]);
	if (slave >= 0)
		close(slave);
	for (int i = 0; i < S.cgprocs.n; i++) {
		char b[24];
		snprintf(b, sizeof b, "%d", (int)pid);
		if (write(cgfd[i], b, strlen(b)) < 0) {
			syserr("write %s", S.cgprocs.v[i]);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			exec_fail(125, g_err);
		}
		close(cgfd[i]);
	}
	char ctl[128];
	size_t ctll = 0;
	int ctl_open = 0;
	if (master >= 0 && fcntl(3, F_GETFD) >= 0) {
		/* apply an initial size queued by the daemon before the process starts */
		set_nonblock(3);
		ctl_open = ctl_read(master, ctl, &ctll, sizeof ctl);
	}
	if (write(sp[1], "1", 1) != 1) {
		syserr("release process");
		exec_fail(125, g_err);
	}
	close(sp[1]);
	{
		char eb[4 + sizeof g_err + 1];
		size_t el = 0;
		for (;;) {
			ssize_t r = read(ep[0], eb + el, sizeof eb - 1 - el);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			el += (size_t)r;
			if (el >= sizeof eb - 1)
				break;
		}
		close(ep[0]);
		if (el >= 4) {
			int code;
			memcpy(&code, eb, 4);
			eb[el] = 0;
			waitpid(pid, NULL, 0);
			exec_fail(code == 127 ? 127 : 126, eb + 4);
		}
	}

	/* relay loop */
	char *ibuf = NULL, *obuf = NULL;
	size_t ilen = 0;
	int in_open = 0, out_open = 0;
	if (master >= 0) {
		set_nonblock(master);
		ibuf = xmalloc(RBUF_SIZE);
		obuf = xmalloc(RBUF_SIZE);
		in_open = 1;
		out_open = 1;
	}
	int exited = 0, code = 0;
	long long deadline = 0;
	for (;;) {
		if (exited && (!out_open || now_ms() >= deadline))
			break;
		struct pollfd pf[5];
		pf[0] = (struct pollfd){sfd, POLLIN, 0};
		pf[1] = (struct pollfd){(in_open && !ilen) ? 0 : -1, POLLIN, 0};
		pf[2] = (struct pollfd){(master >= 0 && ilen) ? master : -1, POLLOUT, 0};
		pf[3] = (struct pollfd){out_open ? master : -1, POLLIN, 0};
		pf[4] = (struct pollfd){ctl_open ? 3 : -1, POLLIN, 0};
		int timeout = -1;
		if (exited) {
			long long left = deadline - now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		if (poll(pf, 5, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[3].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(master, obuf, RBUF_SIZE);
			if (r > 0)
				write_all(1, obuf, (size_t)r);
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				out_open = 0;
		}
		if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(0, ibuf, RBUF_SIZE);
			if (r > 0)
				ilen = (size_t)r;
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				in_open = 0;
		}
		if (ilen && master >= 0) {
			ssize_t w = write(master, ibuf, ilen);
			if (w > 0) {
				memmove(ibuf, ibuf + w, ilen - (size_t)w);
				ilen -= (size_t)w;
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				ilen = 0;
				in_open = 0;
			}
		}
		if (pf[4].revents & (POLLIN | POLLHUP | POLLERR))
			ctl_open = ctl_read(master, ctl, &ctll, sizeof ctl);
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si)
				if (si.ssi_signo != SIGCHLD && !exited)
					kill(pid, (int)si.ssi_signo);
			int st;
			pid_t w;
			while ((w = waitpid(-1, &st, WNOHANG)) > 0)
				if (w == pid) {
					exited = 1;
					code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
					deadline = now_ms() + 2000;
				}
		}
	}
	return code;
}

/* ------------------------------------------------------------------ */
/* whiteouts                                                            */
/* ------------------------------------------------------------------ */

static int rm_tree_at(int dfd, const char *name)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && rm_tree_at(dirfd(d), de->d_name) < 0)
			r = -1;
	closedir(d);
	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -1;
	return r;
}

static int wh_dir(int dfd, const char *path)
{
	int fd2 = dup(dfd);
	if (fd2 < 0)
		return syserr("dup");
	DIR *d = fdopendir(fd2);
	if (!d) {
		close(fd2);
		return syserr("opendir %s", path);
	}
	strlist subs = {0}, whs = {0}, meta = {0};
	int opaque = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (!strcmp(n, ".wh..wh..opq"))
			opaque = 1;
		else if (!strncmp(n, ".wh..wh.", 8))
			sl_push(&meta, xstrdup(n));
		else if (!strncmp(n, ".wh.", 4))
			sl_push(&whs, xstrdup(n));
		else {
			int isdir = de->d_type == DT_DIR;
			if (de->d_type == DT_UNKNOWN) {
				struct stat st;
				isdir = fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
			}
			if (isdir)
				sl_push(&subs, xstrdup(n));
		}
	}
	closedir(d);
	int r = 0;
	if (opaque) {
		if (unlinkat(dfd, ".wh..wh..opq", 0) < 0)
			r = syserr("remove %s/.wh..wh..opq", path);
		else if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
			r = syserr("set trusted.overlay.opaque on %s", path);
	}
	for (int i = 0; r == 0 && i < meta.n; i++)
		if (rm_tree_at(dfd, meta.v[i]) < 0)
			r = syserr("remove %s/%s", path, meta.v[i]);
	for (int i = 0; r == 0 && i < whs.n; i++) {
		const char *name = whs.v[i] + 4;
		if (unlinkat(dfd, whs.v[i], 0) < 0) {
			r = syserr("remove %s/%s", path, whs.v[i]);
			break;
		}
		if (rm_tree_at(dfd, name) < 0) {
			r = syserr("remove %s/%s", path, name);
			break;
		}
		if (mknodat(dfd, name, S_IFCHR | 0, makedev(0, 0)) < 0) {
			r = syserr("mknod whiteout %s/%s", path, name);
			break;
		}
	}
	for (int i = 0; r == 0 && i < subs.n; i++) {
		int cfd = openat(dfd, subs.v[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			r = syserr("open %s/%s", path, subs.v[i]);
			break;
		}
		char *sub = xasprintf("%s/%s", path, subs.v[i]);
		r = wh_dir(cfd, sub);
		free(sub);
		close(cfd);
	}
	for (int i = 0; i < subs.n; i++)
		free(subs.v[i]);
	for (int i = 0; i < whs.n; i++)
		free(whs.v[i]);
	for (int i = 0; i < meta.n; i++)
		free(meta.v[i]);
	free(subs.v);
	free(whs.v);
	free(meta.v);
	return r;
}

static int whiteouts_main(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		syserr("open %s", dir);
		dprintf(2, "tsswarm-shim: %s\n", g_err);
		return 1;
	}
	if (wh_dir(fd, dir) < 0) {
		dprintf(2, "tsswarm-shim: %s\n", g_err);
		return 1;
	}
	close(fd);
	return 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	/* make sure fds 0-2 exist so no pipe/socket we create can land on them */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			return 125;
	g_argv_start = argv[0];
	g_argv_len = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]);
	if (argc == 3 && !strcmp(argv[1], "run"))
		return run_main(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "exec"))
		return exec_main(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "whiteouts"))
		return whiteouts_main(argv[2]);
	dprintf(2, "usage: tsswarm-shim run SPECFILE | exec SPECFILE | whiteouts DIR\n");
	return 2;
}
