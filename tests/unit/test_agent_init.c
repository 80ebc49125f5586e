/* The agent's PID 1 command-line parsing (tools/agent/init.c): kvmbox.hostname/ip/gw/dns, the kernel's own
 * ip=, quoting the kernel's way, bad values skipped with a warning each. The PID 1 side effects are covered
 * by tests/integration/test_agent_boot.py. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "tools/agent/init.h"

UNIT_SUITE(agent_init);

struct warnings {
	int n;
	char last[256];
};

static void collect(void *ctx, const char *msg)
{
	struct warnings *w = ctx;
	w->n++;
	snprintf(w->last, sizeof(w->last), "%s", msg);
}

static const char *addr(struct in_addr a)
{
	static char buf[INET_ADDRSTRLEN];
	return inet_ntop(AF_INET, &a, buf, sizeof(buf));
}

Test(agent_init, full_line)
{
	struct agent_cmdline c;
	struct warnings w = { 0 };
	agent_cmdline_parse("console=ttyS0 reboot=k quiet kvmbox.hostname=box1 kvmbox.ip=10.0.2.15/24 "
			    "kvmbox.ip=192.168.7.2/30@eth1 kvmbox.gw=10.0.2.1 kvmbox.dns=10.0.2.3,2001:db8::53\n",
			    &c, collect, &w);
	cr_assert_eq(w.n, 0, "%s", w.last);
	cr_assert_str_eq(c.hostname, "box1");
	cr_assert_eq(c.n_ips, 2);
	cr_assert_str_eq(addr(c.ips[0].addr), "10.0.2.15");
	cr_assert_eq(c.ips[0].prefix, 24);
	cr_assert_str_eq(c.ips[0].ifname, "eth0");
	cr_assert_str_eq(addr(c.ips[1].addr), "192.168.7.2");
	cr_assert_eq(c.ips[1].prefix, 30);
	cr_assert_str_eq(c.ips[1].ifname, "eth1");
	cr_assert(c.has_gw);
	cr_assert_str_eq(addr(c.gw), "10.0.2.1");
	cr_assert_eq(c.n_dns, 2);
	cr_assert_str_eq(c.dns[0], "10.0.2.3");
	cr_assert_str_eq(c.dns[1], "2001:db8::53");
	cr_assert_not(c.kernel_ip);
}

Test(agent_init, empty_and_absent)
{
	struct agent_cmdline c;
	agent_cmdline_parse("", &c, NULL, NULL);
	cr_assert_str_eq(c.hostname, "");
	cr_assert_eq(c.n_ips, 0);
	cr_assert_not(c.has_gw);
	cr_assert_eq(c.n_dns, 0);
	agent_cmdline_parse("   kvmbox.hostname  kvmbox.other=1 xkvmbox.hostname=no", &c, NULL, NULL);
	cr_assert_str_eq(c.hostname, "");
}

Test(agent_init, quotes_and_init_args)
{
	struct agent_cmdline c;
	/* A quoted value with spaces is one word; what follows "--" is init's argv, not a parameter. */
	agent_cmdline_parse("kvmbox_cmd=\"echo kvmbox.hostname=inside\" kvmbox.hostname=\"q1\" -- kvmbox.hostname=after",
			    &c, NULL, NULL);
	cr_assert_str_eq(c.hostname, "q1");
}

Test(agent_init, bad_values_are_skipped)
{
	struct agent_cmdline c;
	struct warnings w = { 0 };
	agent_cmdline_parse("kvmbox.hostname=-x kvmbox.ip=10.0.0.1 kvmbox.ip=10.0.0.1/33 kvmbox.ip=300.1.1.1/8 "
			    "kvmbox.ip=10.0.0.1/8@ kvmbox.ip=10.0.0.1/8@averyveryverylongname kvmbox.ip=10.0.0.1/x "
			    "kvmbox.gw=nope kvmbox.dns=1.1.1.1,bad,8.8.8.8 kvmbox.ip=10.1.1.1/16@eth2",
			    &c, collect, &w);
	cr_assert_eq(w.n, 9, "%d warnings, the last %s", w.n, w.last);
	cr_assert_str_eq(c.hostname, "");
	cr_assert_eq(c.n_ips, 1);
	cr_assert_str_eq(c.ips[0].ifname, "eth2");
	cr_assert_not(c.has_gw);
	cr_assert_eq(c.n_dns, 2);
	cr_assert_str_eq(c.dns[1], "8.8.8.8");
	cr_assert(strstr(w.last, "kvmbox.dns") || strstr(w.last, "kvmbox.gw"), "%s", w.last);
}

Test(agent_init, limits)
{
	struct agent_cmdline c;
	struct warnings w = { 0 };
	agent_cmdline_parse("kvmbox.ip=1.0.0.1/8@a kvmbox.ip=1.0.0.2/8@b kvmbox.ip=1.0.0.3/8@c kvmbox.ip=1.0.0.4/8@d "
			    "kvmbox.ip=1.0.0.5/8@e kvmbox.dns=1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4",
			    &c, collect, &w);
	cr_assert_eq(c.n_ips, AGENT_MAX_IPS);
	cr_assert_eq(c.n_dns, AGENT_MAX_DNS);
	cr_assert_eq(w.n, 2);
}

Test(agent_init, kernel_ip)
{
	struct agent_cmdline c;
	agent_cmdline_parse("ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off", &c, NULL, NULL);
	cr_assert(c.kernel_ip);
	cr_assert_str_eq(c.kernel_ip_dev, "eth0");
	cr_assert(c.kernel_ip_gw);
	agent_cmdline_parse("ip=10.0.2.15:::255.255.255.0:::off", &c, NULL, NULL);
	cr_assert(c.kernel_ip);
	cr_assert_str_eq(c.kernel_ip_dev, "", "no device: the kernel configures them all");
	cr_assert_not(c.kernel_ip_gw);
	agent_cmdline_parse("ip=dhcp", &c, NULL, NULL);
	cr_assert(c.kernel_ip);
	cr_assert_str_eq(c.kernel_ip_dev, "");
	agent_cmdline_parse("ip=off", &c, NULL, NULL);
	cr_assert_not(c.kernel_ip);
	agent_cmdline_parse("ip=none kvmbox.ip=1.2.3.4/8", &c, NULL, NULL);
	cr_assert_not(c.kernel_ip);
	cr_assert_eq(c.n_ips, 1);
}

Test(agent_init, hostname_rules)
{
	cr_assert(agent_hostname_valid("kvmbox"));
	cr_assert(agent_hostname_valid("a-b.c9"));
	cr_assert_not(agent_hostname_valid(""));
	cr_assert_not(agent_hostname_valid("-a"));
	cr_assert_not(agent_hostname_valid(".a"));
	cr_assert_not(agent_hostname_valid("a b"));
	cr_assert_not(agent_hostname_valid("a_b"));
	char long_name[66];
	memset(long_name, 'a', 65);
	long_name[65] = '\0';
	cr_assert_not(agent_hostname_valid(long_name));
	long_name[64] = '\0';
	cr_assert(agent_hostname_valid(long_name));
}

Test(agent_init, parse_ip_edges)
{
	struct agent_ip ip;
	const char *why;
	cr_assert_eq(agent_parse_ip("0.0.0.0/0", &ip, &why), 0);
	cr_assert_eq(ip.prefix, 0);
	cr_assert_eq(agent_parse_ip("10.0.0.1/32@lo", &ip, &why), 0);
	cr_assert_str_eq(ip.ifname, "lo");
	cr_assert_eq(agent_parse_ip("10.0.0.1/-1", &ip, &why), -1);
	cr_assert_eq(agent_parse_ip("10.0.0.1/+8", &ip, &why), -1);
	cr_assert_eq(agent_parse_ip("10.0.0.1/8@eth0:1", &ip, &why), -1);
	cr_assert_eq(agent_parse_ip("::1/8", &ip, &why), -1);
	cr_assert_str_eq(why, "not an IPv4 address");
}
