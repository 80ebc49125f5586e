#include "vmm/config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One table drives the command line, the JSON config file and --help. */
enum opt_type { OPT_STRING, OPT_UINT, OPT_NUMBER, OPT_FLAG, OPT_LIST };

struct opt_desc {
	const char *name;
	enum opt_type type;
	const char *arg;   /* placeholder in --help */
	const char *help;
	bool json;         /* accepted as a --config key */
};

static const struct opt_desc opts[] = {
	{ "kernel", OPT_STRING, "PATH", "guest kernel: ELF vmlinux (64-bit or PVH entry) or bzImage", true },
	{ "initrd", OPT_STRING, "PATH", "initial ramdisk", true },
	{ "cmdline", OPT_STRING, "STR", "kernel command line (appended to the monitor's defaults)", true },
	{ "memory", OPT_UINT, "MiB", "guest RAM in MiB (default 128)", true },
	{ "cpus", OPT_UINT, "N", "vCPUs (default 1)", true },
	{ "console", OPT_STRING, "stdio|PATH|none", "where COM1 goes (default stdio)", true },
	{ "timeout", OPT_NUMBER, "SECONDS", "end the VM after this long (exit code 5)", true },
	{ "entry", OPT_STRING, "auto|linux64|pvh", "ELF entry protocol (default auto)", true },
	{ "hugepages", OPT_FLAG, NULL, "back guest RAM with 2 MiB huge pages", true },
	{ "allow-emulated", OPT_FLAG, NULL, "on a PVM host, run a kernel that would run emulated", true },
	{ "no-default-cmdline", OPT_FLAG, NULL, "pass --cmdline exactly, without the monitor's defaults", true },
	{ "disk", OPT_LIST, "PATH[,readonly][,serial=ID][,direct]", "virtio-blk disk (repeatable; /dev/vda, vdb, ...)", true },
	{ "net", OPT_LIST, "tap=NAME[,mac=MAC]|auto[,mac=MAC]", "virtio-net device on a tap (repeatable; eth0, eth1, ...)", true },
	{ "vsock", OPT_STRING, "cid=N,uds=PATH", "virtio-vsock device, host side on the Unix socket PATH", true },
	{ "log-level", OPT_STRING, "LEVEL", "error|warn|info|debug (default info)", true },
	{ "config", OPT_STRING, "FILE", "read options from a JSON object with these long names as keys", false },
	{ "probe", OPT_FLAG, NULL, "print the KVM backend and capabilities, then exit", false },
	{ "help", OPT_FLAG, NULL, "show this help", false },
	{ "version", OPT_FLAG, NULL, "show the version", false },
};
#define NR_OPTS (sizeof(opts) / sizeof(opts[0]))

void config_defaults(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->memory_mib = 128;
	c->cpus = 1;
	c->console = CONSOLE_STDIO;
	c->entry = ENTRY_AUTO;
	c->log_level = LOG_INFO;
}

void config_free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console_path);
	for (unsigned i = 0; i < c->nr_disks; i++)
		free(c->disks[i]);
	free(c->disks);
	free(c->vsock);
	for (unsigned i = 0; i < c->nr_nets; i++)
		free(c->nets[i]);
	free(c->nets);
	memset(c, 0, sizeof(*c));
}

static int parse_uint(const char *name, const char *s, uint64_t *out, struct error *err)
{
	char *end;
	errno = 0;
	/* strtoull would skip blanks and negate a '-': accept digits only. */
	if (*s < '0' || *s > '9')
		return error_set(err, "--%s: '%s' is not a positive whole number", name, s);
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return error_set(err, "--%s: '%s' is not a positive whole number", name, s);
	*out = v;
	return 0;
}

static int set_string(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -1;
}

static int config_read_file(struct vm_config *c, const char *path, struct error *err);

/* One more value of a repeatable option (--disk, --net), kept in order. */
static int list_append(char ***list, unsigned *nr, unsigned max, const char *name, const char *what,
		       const char *v, struct error *err)
{
	if (*nr == max)
		return error_set(err, "--%s %s: at most %u %s", name, v, max, what);
	char **l = realloc(*list, (*nr + 1) * sizeof(*l));
	if (!l)
		return error_set(err, "out of memory");
	*list = l;
	l[*nr] = NULL;
	if (set_string(&l[*nr], v))
		return error_set(err, "out of memory");
	(*nr)++;
	return 0;
}

/* Applies one option given as text (from argv) or as an already type-checked JSON value rendered to text. */
static int config_set(struct vm_config *c, const struct opt_desc *o, const char *v, struct error *err)
{
	const char *n = o->name;
	uint64_t u = 0;
	if (o->type == OPT_UINT && parse_uint(n, v, &u, err))
		return -1;
	if (!strcmp(n, "kernel"))
		return set_string(&c->kernel, v);
	if (!strcmp(n, "disk"))
		return list_append(&c->disks, &c->nr_disks, CONFIG_MAX_DISKS, n, "disks", v, err);
	if (!strcmp(n, "net"))
		return list_append(&c->nets, &c->nr_nets, CONFIG_MAX_NETS, n, "network devices", v, err);
	if (!strcmp(n, "initrd"))
		return set_string(&c->initrd, v);
	if (!strcmp(n, "vsock"))
		return set_string(&c->vsock, v);
	if (!strcmp(n, "cmdline"))
		return set_string(&c->cmdline, v);
	if (!strcmp(n, "memory")) {
		if (u < CONFIG_MIN_MEMORY_MIB || u > CONFIG_MAX_MEMORY_MIB)
			return error_set(err, "--memory %s: must be between %d and %llu MiB", v,
					 CONFIG_MIN_MEMORY_MIB, (unsigned long long)CONFIG_MAX_MEMORY_MIB);
		c->memory_mib = u;
		return 0;
	}
	if (!strcmp(n, "cpus")) {
		if (u < 1 || u > CONFIG_MAX_CPUS)
			return error_set(err, "--cpus %s: must be between 1 and %d", v, CONFIG_MAX_CPUS);
		c->cpus = (unsigned)u;
		return 0;
	}
	if (!strcmp(n, "console")) {
		if (!strcmp(v, "stdio"))
			c->console = CONSOLE_STDIO;
		else if (!strcmp(v, "none"))
			c->console = CONSOLE_NONE;
		else if (*v == '\0')
			return error_set(err, "--console: empty; give stdio, none or a file path");
		else {
			c->console = CONSOLE_FILE;
			return set_string(&c->console_path, v);
		}
		return 0;
	}
	if (!strcmp(n, "timeout")) {
		char *end;
		errno = 0;
		double d = strtod(v, &end);
		if (errno || *end || *v == '\0' || !isfinite(d) || d <= 0 || d > 1e9)
			return error_set(err, "--timeout %s: must be a positive number of seconds", v);
		c->timeout_s = d;
		return 0;
	}
	if (!strcmp(n, "entry")) {
		if (!strcmp(v, "auto"))
			c->entry = ENTRY_AUTO;
		else if (!strcmp(v, "linux64"))
			c->entry = ENTRY_LINUX64;
		else if (!strcmp(v, "pvh"))
			c->entry = ENTRY_PVH;
		else
			return error_set(err, "--entry %s: must be auto, linux64 or pvh", v);
		return 0;
	}
	bool flag = !strcmp(v, "true");
	if (!strcmp(n, "hugepages"))
		c->hugepages = flag;
	else if (!strcmp(n, "allow-emulated"))
		c->allow_emulated = flag;
	else if (!strcmp(n, "no-default-cmdline"))
		c->no_default_cmdline = flag;
	else if (!strcmp(n, "probe"))
		c->probe = flag;
	else if (!strcmp(n, "help"))
		c->help = flag;
	else if (!strcmp(n, "version"))
		c->version = flag;
	else if (!strcmp(n, "log-level")) {
		if (log_level_parse(v, &c->log_level))
			return error_set(err, "--log-level %s: must be error, warn, info or debug", v);
	} else if (!strcmp(n, "config"))
		return config_read_file(c, v, err);
	return 0;
}

int config_apply_json_text(struct vm_config *c, const char *text, const char *origin, struct error *err)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return error_set(err, "%s: invalid JSON at line %d column %d: %s", origin, jerr.line,
				 jerr.column, jerr.text);
	int rc = 0;
	if (!json_is_object(root)) {
		rc = error_set(err, "%s: the configuration must be a JSON object of option names", origin);
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		const struct opt_desc *o = NULL;
		for (size_t i = 0; i < NR_OPTS; i++)
			if (opts[i].json && !strcmp(opts[i].name, key))
				o = &opts[i];
		if (!o) {
			rc = error_set(err, "%s: unknown key \"%s\" (the keys are the long options of "
				       "kvmbox-vmm --help)", origin, key);
			goto out;
		}
		if (o->type == OPT_LIST) {
			if (!json_is_array(val)) {
				rc = error_set(err, "%s: \"%s\" must be an array of strings", origin, key);
				goto out;
			}
			size_t i;
			json_t *item;
			json_array_foreach(val, i, item) {
				if (!json_is_string(item)) {
					rc = error_set(err, "%s: \"%s\"[%zu] must be a string", origin, key, i);
					goto out;
				}
				if (config_set(c, o, json_string_value(item), err)) {
					rc = -1;
					goto out;
				}
			}
			continue;
		}
		char buf[64];
		const char *text_val = NULL;
		switch (o->type) {
		case OPT_LIST:
			break;
		case OPT_STRING:
			if (json_is_string(val))
				text_val = json_string_value(val);
			break;
		case OPT_UINT:
			if (json_is_integer(val) && json_integer_value(val) >= 0) {
				snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(val));
				text_val = buf;
			}
			break;
		case OPT_NUMBER:
			if (json_is_number(val)) {
				snprintf(buf, sizeof(buf), "%.17g", json_number_value(val));
				text_val = buf;
			}
			break;
		case OPT_FLAG:
			if (json_is_boolean(val))
				text_val = json_is_true(val) ? "true" : "false";
			break;
		}
		if (!text_val) {
			static const char *const want[] = { "a string", "a non-negative integer", "a number",
							    "true or false", "an array of strings" };
			rc = error_set(err, "%s: \"%s\" must be %s", origin, key, want[o->type]);
			goto out;
		}
		if (config_set(c, o, text_val, err)) {
			rc = -1;
			goto out;
		}
	}
out:
	json_decref(root);
	return rc;
}

static int config_read_file(struct vm_config *c, const char *path, struct error *err)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return error_set(err, "--config %s: cannot open: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0, len = 0;
	int rc = 0;
	for (;;) {
		if (len > (1u << 20)) {
			rc = error_set(err, "--config %s: larger than 1 MiB; is it the right file?", path);
			goto out;
		}
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap);
			if (!nb) {
				rc = error_set(err, "--config %s: out of memory", path);
				goto out;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		rc = error_set(err, "--config %s: read error: %s", path, strerror(errno));
		goto out;
	}
	buf[len] = '\0';
	rc = config_apply_json_text(c, buf, path, err);
out:
	free(buf);
	fclose(f);
	return rc;
}

int config_parse_args(struct vm_config *c, int argc, char **argv, struct error *err)
{
	struct option longopts[NR_OPTS + 1];
	for (size_t i = 0; i < NR_OPTS; i++)
		longopts[i] = (struct option){ opts[i].name,
					       opts[i].type == OPT_FLAG ? no_argument : required_argument,
					       NULL, (int)(256 + i) };
	longopts[NR_OPTS] = (struct option){ 0 };
	opterr = 0;
	optind = 0; /* 0, not 1: also forgets glibc's position inside a previous "-xy" cluster */
	for (;;) {
		int idx = -1;
		int ch = getopt_long(argc, argv, "h", longopts, &idx);
		if (ch == -1)
			break;
		if (ch == 'h') {
			c->help = true;
			continue;
		}
		if (ch == '?' || ch == ':') {
			/* optopt: a long option's value when its argument is missing, the letter of an unknown
			 * short option, 0 for an unknown long option. */
			if (optopt >= 256)
				return error_set(err, "option --%s needs a value; see kvmbox-vmm --help",
						 opts[optopt - 256].name);
			if (optopt)
				return error_set(err, "unknown option -%c; see kvmbox-vmm --help", optopt);
			return error_set(err, "unknown option %s; see kvmbox-vmm --help", argv[optind - 1]);
		}
		const struct opt_desc *o = &opts[ch - 256];
		if (config_set(c, o, o->type == OPT_FLAG ? "true" : optarg, err))
			return -1;
	}
	if (optind < argc)
		return error_set(err, "unexpected argument '%s'; see kvmbox-vmm --help", argv[optind]);
	return 0;
}

void config_print_help(const char *prog)
{
	printf("usage: %s --kernel PATH [options]\n"
	       "       %s --config FILE.json [options]\n"
	       "       %s --probe\n\n"
	       "Runs one KVM virtual machine until the guest powers off or reboots.\n\noptions:\n",
	       prog, prog, prog);
	for (size_t i = 0; i < NR_OPTS; i++) {
		char left[48];
		snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
			 opts[i].arg ? opts[i].arg : "");
		printf("  %-32s %s\n", left, opts[i].help);
	}
	printf("\nexit status: 0 guest powered off or rebooted, 1 bad input, 2 host/KVM error,\n"
	       "3 guest triple fault, 4 KVM internal or emulation error, 5 timeout, 6 guest kernel panic,\n"
	       "128+N stopped by signal N. Manual: docs/kvmbox-vmm.md\n");
}
