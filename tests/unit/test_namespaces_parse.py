"""What a container is, from its cgroup path, and the host's NAT, from conntrack's table.

The cgroup paths follow the runtimes' documented layouts: docker's systemd cgroup driver
(`docker-<id>.scope`) and cgroupfs driver (`/docker/<id>`), podman (`libpod-<id>.scope`),
containerd's CRI plugin, CRI-O, LXC (`lxc.payload.<name>`), libvirt's QEMU machines and
systemd-nspawn, whose unit names systemd escapes (`\\x2d` for `-`, systemd.unit(5)).
conntrack lines are as `/proc/net/nf_conntrack` prints them (the original tuple, then the
reply tuple).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch import codec
from netwatch.model import Container, Direction, Endpoint, FlowKey, SocketEntry, Transport, parse_ip
from netwatch.sources.conntrack import parse_translations
from netwatch.sources.namespaces import Namespaces, docker_name, parse_cgroup

ID = "3f4e1b2c9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"


def test_cgroup_paths_of_each_runtime() -> None:
    cases = {
        f"0::/system.slice/docker-{ID}.scope": ("docker", ID),
        f"12:pids:/docker/{ID}\n11:memory:/docker/{ID}": ("docker", ID),
        f"0::/user.slice/user@1000.service/user.slice/libpod-{ID}.scope/container": ("podman", ID),
        f"0::/machine.slice/libpod-{ID}.scope": ("podman", ID),
        f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope": ("containerd", ID),
        f"0::/kubepods.slice/crio-{ID}.scope": ("cri-o", ID),
        "0::/lxc.payload.web1": ("lxc", "web1"),
        "0::/machine.slice/machine-qemu\\x2d3\\x2dwin\\x2d11.scope/libvirt/emulator": (
            "libvirt",
            "win-11",
        ),
        "0::/machine.slice/machine-build\\x2dbox.scope/payload": ("systemd-nspawn", "build-box"),
        "0::/machine.slice/systemd-nspawn@debian.service/payload": ("systemd-nspawn", "debian"),
    }
    for text, want in cases.items():
        assert parse_cgroup(text) == want, text


def test_host_processes_and_conmon_are_no_container() -> None:
    for text in (
        "0::/",
        "0::/user.slice/user-1000.slice/session-2.scope",
        "0::/system.slice/docker.service",
        f"0::/machine.slice/libpod-conmon-{ID}.scope",
        "9:name=systemd:/\n4:memory:/process_api/419f72fb5e4ba011f1360006b93e996e",
        "",
        "garbage without colons",
    ):
        assert parse_cgroup(text) is None, text


@given(st.text(max_size=400))
def test_cgroup_parser_never_raises(text: str) -> None:
    got = parse_cgroup(text)
    assert got is None or (got[0] and isinstance(got[1], str))


@given(st.lists(st.text(st.characters(blacklist_characters="\n"), max_size=80), max_size=6))
def test_cgroup_parser_on_line_shaped_text(parts: list[str]) -> None:
    text = "\n".join(f"{i}:x:/{p}" for i, p in enumerate(parts))
    got = parse_cgroup(text + f"\n0::/system.slice/docker-{ID}.scope")
    assert got is not None  # a later line still names the container


def test_docker_name_only_from_its_own_file(tmp_path: Path) -> None:
    folder = tmp_path / ID
    folder.mkdir()
    (folder / "config.v2.json").write_text(json.dumps({"Name": "/web", "ID": ID}))
    assert docker_name(ID, str(tmp_path)) == "web"
    assert docker_name("../" + ID, str(tmp_path)) is None
    assert docker_name("f" * 64, str(tmp_path)) is None  # no such container
    (folder / "config.v2.json").write_text("[" * 5000)
    assert docker_name(ID, str(tmp_path)) is None


CONNTRACK = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=172.17.0.2 dst=203.0.113.9 sport=51234 dport=443 \
src=203.0.113.9 dst=192.0.2.1 sport=443 dport=40001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 117 TIME_WAIT src=192.0.2.1 dst=203.0.113.9 sport=50000 dport=80 \
src=203.0.113.9 dst=192.0.2.1 sport=80 dport=50000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=198.51.100.3 dst=192.0.2.1 sport=5353 dport=8053 [UNREPLIED] \
src=172.17.0.3 dst=198.51.100.3 sport=53 dport=5353 mark=0 zone=0 use=2
ipv6     10 tcp      6 300 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0002 \
dst=2001:0db8:0000:0000:0000:0000:0000:0009 sport=40000 dport=443 \
src=2001:0db8:0000:0000:0000:0000:0000:0009 dst=2001:0db8:0000:0000:0000:0000:0000:0001 \
sport=443 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=172.17.0.2 dst=203.0.113.9 type=8 code=0 id=7 src=203.0.113.9 \
dst=192.0.2.1 type=0 code=0 id=7 mark=0 use=1
"""


def ep(ip: str, port: int) -> Endpoint:
    return Endpoint(parse_ip(ip), port)


def test_conntrack_translations_keep_only_translated_tcp_and_udp() -> None:
    got = parse_translations(CONNTRACK)
    assert got == (
        (
            (Transport.TCP, ep("172.17.0.2", 51234), ep("203.0.113.9", 443)),
            (Transport.TCP, ep("192.0.2.1", 40001), ep("203.0.113.9", 443)),
        ),
        (
            (Transport.UDP, ep("198.51.100.3", 5353), ep("192.0.2.1", 8053)),
            (Transport.UDP, ep("198.51.100.3", 5353), ep("172.17.0.3", 53)),
        ),
        (
            (Transport.TCP, ep("2001:db8::2", 40000), ep("2001:db8::9", 443)),
            (Transport.TCP, ep("2001:db8::1", 40000), ep("2001:db8::9", 443)),
        ),
    )
    assert parse_translations(CONNTRACK, limit=1) == got[:1]


@given(st.text(max_size=600))
def test_conntrack_parser_never_raises(text: str) -> None:
    for original, translated in parse_translations(text):
        assert original != translated


@given(st.lists(st.sampled_from(CONNTRACK.split()), max_size=40))
def test_conntrack_parser_on_shuffled_fields(words: list[str]) -> None:
    for original, translated in parse_translations("ipv4 2 tcp 6 9 " + " ".join(words)):
        assert original[0] is Transport.TCP and original != translated


def test_socket_entries_and_translations_cross_the_channel() -> None:
    ctr = Container(netns=4026532999, name="web", runtime="docker")
    key = FlowKey(Transport.TCP, ep("172.17.0.2", 51234), ep("203.0.113.9", 443))
    e = SocketEntry(key, "ESTABLISHED", Direction.UNKNOWN, inode=7, uid=0, container=ctr)
    items = json.loads(json.dumps(codec.socket_entry_to_list(e, None)))
    assert codec.socket_entry_from_list(items, {}) == e
    host = SocketEntry(key, "ESTABLISHED", Direction.UNKNOWN, inode=8, uid=0)
    assert len(codec.socket_entry_to_list(host, None)) == 10  # unchanged for the host's own
    nat = parse_translations(CONNTRACK)
    assert codec.nat_from_list(json.loads(json.dumps(codec.nat_to_list(nat)))) == nat
    homes = ((ctr.netns, (parse_ip("172.17.0.2"), parse_ip("fd00::2"))),)
    assert codec.homes_from_list(json.loads(json.dumps(codec.homes_to_list(homes)))) == homes


@pytest.mark.parametrize(
    "bad",
    [{}, [[1]], [["x", []]], [[True, []]], [[1, "10.0.0.1"]], [[1, ["not an ip"]]], [[1, [5]]]],
)
def test_damaged_homes_from_the_channel_are_one_codec_error(bad: object) -> None:
    with pytest.raises(codec.CodecError):
        codec.homes_from_list(bad)


TCP_ROW = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  "
    "      0 424242 1 0000000000000000 100 0 0 10 0\n"
)


def test_namespaces_found_named_and_listed_from_a_proc_tree(tmp_path: Path) -> None:
    """A /proc-shaped tree (the `ns/net` links are files: a shared namespace is a hard
    link, so `stat` gives one inode): ours and pid 1's are left out, each other namespace is
    named from the first cgroup a runtime names (a helper process first here), docker's
    name from its own file, else the `ip netns` name; its sockets from `/proc/<pid>/net`."""
    proc, run, docker = tmp_path / "proc", tmp_path / "netns", tmp_path / "docker"
    run.mkdir()
    (docker / ID).mkdir(parents=True)
    (docker / ID / "config.v2.json").write_text(json.dumps({"Name": "/web"}))

    def process(pid: str, cgroup: str, net: Path | None = None) -> Path:
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "net").mkdir()
        (proc / pid / "net" / "tcp").write_text(TCP_ROW)
        (proc / pid / "cgroup").write_text(cgroup)
        link = proc / pid / "ns" / "net"
        if net is None:
            link.write_text("")
        else:
            os.link(net, link)
        return link

    host = process("1", "0::/init.scope")
    process("2", "0::/")  # the sampler's own namespace, not pid 1's
    (proc / "self").symlink_to(proc / "2")
    process("3", "0::/", host)
    helper = process("300", "0::/user.slice/rootlessport.scope")  # joined from outside
    process("301", f"0::/system.slice/docker-{ID}.scope", helper)
    lab = process("400", "0::/")
    os.link(lab, run / "lab1")
    ns = Namespaces(str(proc), run_netns=str(run), docker_root=str(docker), enter=False)
    batches = ns.batches()
    assert sorted(c.summary() for c in ns.containers) == ["lab1 (netns)", "web (docker)"]
    assert ns.entered == 0
    listed = {(c.name, t) for t, records, c in batches if records}
    assert listed == {("web", Transport.TCP), ("lab1", Transport.TCP)}
    (record,) = next(r for t, r, c in batches if c.name == "web" and t is Transport.TCP)
    assert record[4] == 424242  # the socket's inode, for the owner map
    # Each namespace's own addresses, from its /proc/<pid>/net, for wildcard servers.
    assert ns.homes() == ()  # no address tables in this tree yet
    (proc / "301" / "net" / "if_inet6").write_text(
        "fd000000000000000000000000000002 04 40 00 82 eth0\n"
    )
    (proc / "300" / "net" / "if_inet6").write_text(
        "fd000000000000000000000000000002 04 40 00 82 eth0\n"
    )
    web = next(c for c in ns.containers if c.name == "web")
    ns = Namespaces(str(proc), run_netns=str(run), docker_root=str(docker), enter=False)
    ns.batches()
    assert ns.homes() == ((web.netns, (parse_ip("fd00::2"),)),)
