"""Readers of xl / xm output, checked on every captured fixture and on generated output."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import FIXTURES
from xdcore.errors import ParseError
from xdcore.model import DomainState
from xdcore.toolstack.parse import (
    ListRow,
    LongEntry,
    domains_from_long,
    merge_listing,
    parse_dryrun_name,
    parse_sxp,
    parse_xl_info,
    parse_xl_list,
    parse_xl_list_long,
    parse_xm_list,
    parse_xm_sxp,
    read_config_name,
)


FIX = FIXTURES


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def xm_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    title = None
    for line in fixture("xm_list_samples.txt").splitlines(keepends=True):
        if line.startswith("=== "):
            title = line[4:].strip()
            sections[title] = ""
        elif title is not None:
            sections[title] += line
    return sections


# -- xl list -------------------------------------------------------------------------


def test_xl_list_fixture_gives_every_state():
    rows = parse_xl_list(fixture("xl_list.txt"))
    assert [(r.name, r.domid, r.state.flags) for r in rows] == [
        ("Domain-0", 0, "r-----"),
        ("debian12", 3, "-b----"),
        ("paused-vm", 4, "--p---"),
        ("shutdown-poweroff", 5, "---s--"),
        ("suspended", 7, "-b-ss-"),
        ("crashed", 8, "---sc-"),
        ("(null)", 9, "-b---d"),  # a dying domain has no name in XenStore any more
    ]
    assert rows[0] == ListRow("Domain-0", 0, 2048, 4, DomainState.from_flags("r-----"), 11794.3)
    assert rows[-1].state.dying and rows[5].state.words == "crashed"


def test_xl_list_basic_fixture():
    rows = parse_xl_list(fixture("xl_list_basic.txt"))
    assert [(r.name, r.domid, r.mem_mib, r.vcpus, r.cpu_time) for r in rows] == [
        ("Domain-0", 0, 2048, 4, 11794.3),
        ("debian12", 3, 1024, 2, 5624.2),
    ]


def test_xl_list_verbose_fixture_reads_uuids():
    rows = parse_xl_list(fixture("xl_listv.txt"))
    assert len(rows) == 7
    assert rows[1].uuid == "2f3c8e1a-6b5d-4c1e-9a7f-0d2b4e6f8a10"
    assert rows[4].name == "suspended" and rows[4].state.shutdown_reason == "s"


HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"


def test_long_names_names_with_spaces_and_null_names_are_read_from_the_right():
    text = HEADER + (
        "a-very-long-domain-name-that-exceeds-forty-characters-wide     4   512     1     --p---      12.3\n"
        "web 12 34                                   6   512     1     -b-sr-      99.0\n"
        "(null)                                       3  1024     2     -b----    5624.2\n"
        "zombie-dying                                10     0     0     -----d  123456.8\n"
        "soft-reset                                  12   512     1     ---sS-       0.1\n"
    )
    rows = parse_xl_list(text)
    assert [(r.name, r.domid) for r in rows] == [
        ("a-very-long-domain-name-that-exceeds-forty-characters-wide", 4),
        ("web 12 34", 6),
        ("(null)", 3),
        ("zombie-dying", 10),
        ("soft-reset", 12),
    ]
    assert rows[1].state.words == "rebooting" and rows[3].cpu_time == 123456.8
    assert rows[4].state.shutdown_reason == "S"


def test_xl_list_with_cpupool_and_numa_columns():
    text = (
        "Name                                        ID   Mem VCPUs\tState\tTime(s)         Cpupool\n"
        "Domain-0                                     0  2048     4     r-----   11794.3          Pool-0\n"
    )
    assert parse_xl_list(text)[0].name == "Domain-0"
    text = (
        "Name                                        ID   Mem VCPUs\tState\tTime(s) NODE Affinity\n"
        "debian12                                     3  1024     2     -b----    5624.2 0-3,5\n"
    )
    assert parse_xl_list(text)[0].domid == 3


def test_a_line_that_is_not_a_row_is_a_parse_error_naming_the_line():
    with pytest.raises(ParseError) as exc:
        parse_xl_list(HEADER + "Domain-0   0  2048\n")
    assert exc.value.where == "line 2"


name_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_categories=("Cc", "Cs", "Zs")) | st.just(" "),
    min_size=1,
    max_size=60,
).map(str.strip).filter(bool)
flag_strings = st.tuples(
    st.sampled_from("r-"), st.sampled_from("b-"), st.sampled_from("p-"), st.sampled_from("s-"),
    st.sampled_from("-rscwS?"), st.sampled_from("d-"),
).map("".join)


@given(st.lists(st.tuples(name_text, st.integers(0, 32767), st.integers(0, 10**7), st.integers(0, 512), flag_strings,
                          st.floats(0, 10**7, allow_nan=False)), max_size=8))
def test_xl_list_rows_printed_with_the_c_format_parse_back(rows):
    text = HEADER + "".join("%-40s %5d %5d %5d     %s  %8.1f\n" % r for r in rows)
    parsed = parse_xl_list(text)
    assert [(p.name, p.domid, p.mem_mib, p.vcpus, p.state.flags) for p in parsed] == [
        (n, d, m, v, DomainState.from_flags(f).flags) for n, d, m, v, f, _ in rows
    ]


# -- xl list -l ----------------------------------------------------------------------


def test_xl_list_long_fixture_uses_the_top_level_domid_never_c_info_domid():
    entries = parse_xl_list_long(fixture("xl_listl.txt"))
    assert [(e.domid, e.name) for e in entries] == [(0, "Domain-0"), (3, "debian12")]
    dom0, deb = entries
    assert dom0.uuid is None and dom0.domain_type == "pv" and dom0.max_memkb == 2097152
    assert deb == LongEntry(3, "debian12", "2f3c8e1a-6b5d-4c1e-9a7f-0d2b4e6f8a10", "pvh", 1049600, 1048576, 2, 2)


def test_xl_list_long_one_domain_fixture():
    (entry,) = parse_xl_list_long(fixture("xl_listl_one.txt"))
    assert entry.domid == 3 and entry.name == "debian12"


def test_xl_list_long_empty_array_as_yajl_prints_it():
    assert parse_xl_list_long("[\n\n]\n\n") == []


def test_xl_list_long_tolerates_missing_and_unknown_keys():
    text = json.dumps([{"domid": 7}, {"domid": 8, "config": {"c_info": {"name": "x", "future": [1]}, "new": {}}}])
    assert parse_xl_list_long(text) == [LongEntry(7, None), LongEntry(8, "x")]


@pytest.mark.parametrize("text,where", [
    ('{"domid": 1}', "top level"),
    ('[1]', "element 0"),
    ('[{"config": {}}]', "element 0"),
    ('[\n    {\n        "domid": 0,\n', "line 4 column 1"),
    ("", "line 1 column 1"),
])
def test_xl_list_long_errors_say_where(text, where):
    with pytest.raises(ParseError) as exc:
        parse_xl_list_long(text)
    assert exc.value.where == where
    assert exc.value.what == "xl list -l output"


def yajl(value, depth: int = 0) -> str:
    """Serialize like yajl's beautify mode (4 spaces, empty containers as bracket/blank line/bracket)."""
    inner = "    " * (depth + 1)
    close = "    " * depth
    if isinstance(value, dict):
        if not value:
            return "{\n\n" + close + "}"
        items = [inner + json.dumps(k) + ": " + yajl(v, depth + 1) for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + close + "}"
    if isinstance(value, list):
        if not value:
            return "[\n\n" + close + "]"
        return "[\n" + ",\n".join(inner + yajl(v, depth + 1) for v in value) + "\n" + close + "]"
    return json.dumps(value)


def xl_list_l_text(value) -> str:
    return yajl(value) + "\n" + "\n"  # yajl's newline, then puts()


def test_the_yajl_serializer_of_these_tests_reproduces_the_real_fixture():
    for name in ("xl_listl.txt", "xl_listl_one.txt"):
        text = fixture(name)
        assert xl_list_l_text(json.loads(text)) == text


scalars = st.one_of(st.integers(-(2**31), 2**32), st.text(max_size=10), st.booleans(), st.none())
extra_json = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=6)


@st.composite
def domain_lists(draw):
    domids = draw(st.lists(st.integers(0, 2**31 - 1), unique=True, max_size=6))
    out = []
    for domid in domids:
        c_info = {"type": draw(st.sampled_from(["pv", "pvh", "hvm"])), "name": draw(st.text(min_size=1, max_size=30))}
        if domid:
            c_info["domid"] = 4294967295
            c_info["uuid"] = draw(st.uuids()).__str__()
        b_info = {"max_memkb": draw(st.integers(0, 2**40)), "target_memkb": draw(st.integers(0, 2**40)),
                  "sched_params": {}, "type." + c_info["type"]: {}}
        if draw(st.booleans()):
            n = draw(st.integers(1, 8))
            b_info = {"max_vcpus": n, "avail_vcpus": list(range(n)), **b_info}
        config = {"c_info": c_info, "b_info": b_info}
        config.update(draw(st.dictionaries(st.sampled_from(["on_reboot", "disks", "future_field"]), extra_json, max_size=2)))
        out.append({"domid": domid, "config": config})
    return out


@given(domain_lists())
def test_generated_listings_in_yajl_layout_parse_to_their_domains(domains):
    entries = parse_xl_list_long(xl_list_l_text(domains))
    assert [(e.domid, e.name) for e in entries] == [(d["domid"], d["config"]["c_info"]["name"]) for d in domains]
    for e, d in zip(entries, domains):
        assert e.max_memkb == d["config"]["b_info"]["max_memkb"]
        assert e.uuid == d["config"]["c_info"].get("uuid")


@given(domain_lists(), st.data())
def test_truncated_listings_raise_parse_error_and_nothing_else(domains, data):
    text = xl_list_l_text(domains)
    cut = data.draw(st.integers(0, text.rindex("]") - 1))
    with pytest.raises(ParseError):
        parse_xl_list_long(text[:cut])


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_xl_list_long_on_arbitrary_text_raises_only_parse_error(text):
    try:
        parse_xl_list_long(text)
    except ParseError:
        pass


# -- xm ------------------------------------------------------------------------------


def test_xm_plain_list_skips_managed_domains_that_are_not_running():
    rows = parse_xm_list(xm_sections()["xm list"])
    assert [(r.name, r.domid, r.state.flags) for r in rows] == [("Domain-0", 0, "r-----"), ("debian12", 3, "-b----")]


def test_xm_long_list_gives_state_memory_and_image_type():
    entries = parse_xm_sxp(xm_sections()["xm list -l (reconstructed)"])
    assert [(e.domid, e.name, e.state.flags) for e in entries] == [(0, "Domain-0", "r-----"), (3, "debian12", "-b----")]
    deb = entries[1]
    assert (deb.uuid, deb.target_memkb, deb.max_memkb, deb.vcpus, deb.domain_type) == (
        "2f3c8e1a-6b5d-4c1e-9a7f-0d2b4e6f8a10", 1024 * 1024, 1024 * 1024, 2, "pv")
    assert deb.cpu_time == 5624.2
    domains = domains_from_long(entries)
    assert [d.name for d in domains] == ["Domain-0", "debian12"] and domains[1].memory_mib == 1024


def test_xm_dryrun_name_comes_from_the_vm_record():
    assert parse_dryrun_name(xm_sections()["xm create --dryrun (reconstructed)"]) == "debian12"


def test_sxp_reads_python2_repr_atoms_and_nesting():
    (expr,) = parse_sxp("(domain (name 'web server') (args \"it's\") (k '') (x 'a\\\\b\\n\\x41'))")
    assert expr == ["domain", ["name", "web server"], ["args", "it's"], ["k", ""], ["x", "a\\b\nA"]]


def test_xm_managed_but_inactive_domain_has_no_domid_and_is_not_listed():
    entries = parse_xm_sxp("(domain (domid None) (name old) (state ------))\n(domain (domid 2) (name run))")
    assert entries[0].domid is None
    assert [d.domid for d in domains_from_long(entries)] == [2]


@pytest.mark.parametrize("text", ["(domain (name x)", "(domain (name 'x))", ")", "(a (b (c)"])
def test_broken_sxp_is_a_parse_error(text):
    with pytest.raises(ParseError):
        parse_xm_sxp(text)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("()'\"\\ \nabc1x")), max_size=80) | st.text(max_size=80))
def test_sxp_parser_raises_nothing_but_parse_error(text):
    try:
        parse_xm_sxp(text)
        parse_dryrun_name(text)
    except ParseError:
        pass


def sxp_atom(s: str) -> str:
    import re

    return s if re.fullmatch(r"[A-Za-z0-9.\-_:/~@]+", s) else repr(s)


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30), st.integers(0, 65535))
def test_xm_names_quoted_like_xend_parse_back(name, domid):
    entries = parse_xm_sxp(f"(domain\n    (domid {domid})\n    (name {sxp_atom(name)})\n)\n")
    assert [(e.domid, e.name) for e in entries] == [(domid, name)]


def test_deeply_nested_sxp_does_not_exhaust_the_stack():
    assert parse_sxp("(" * 5000 + ")" * 5000)


# -- xl in sxp mode -------------------------------------------------------------------


def test_xl_list_long_in_sxp_output_format():
    text = "(domain\n\t(domid 0)\n\t(create_info)\n\t(hvm 0)\n\t(hap <default>)\n\t(name Domain-0)\n)\n"
    assert [(e.domid, e.name) for e in parse_xl_list_long(text)] == [(0, "Domain-0")]


# -- dry run and config names -------------------------------------------------------


def test_xl_dryrun_fixture_name():
    assert parse_dryrun_name(fixture("xl_dryrun.txt")) == "debian12"


def test_dryrun_without_a_name_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_dryrun_name('{"c_info": {"type": "pv"}}\n')


def test_debian12_config_name_is_read_natively():
    assert read_config_name(fixture("debian12.cfg")) == "debian12"


@pytest.mark.parametrize("text,name", [
    ('name="a"; memory=512\n', "a"),
    ("name = 'single'  # comment\n", "single"),
    ('name = "first"\nname = "second"\n', "second"),
    ('name = "web"\nname += "01"\n', "web01"),
    ('disk = [ "phy:/dev/x,xvda,w",\n   "file:/y,xvdb,r", ]\nname = "d"', "d"),
    ('name = "q\\"uote"\n', 'q"uote'),
    ('# name = "commented"\nname="real"', "real"),
    ('vcpus = 0x2\nname = "hex"\n', "hex"),
])
def test_plain_configs_give_their_name(text, name):
    assert read_config_name(text) == name


@pytest.mark.parametrize("text", [
    'name = "a" + "b"\n',  # Python-looking
    'import os\nname = os.path.basename(__file__)\n',
    'NAME = "upper"\n',
    'memory = 512\n',  # no name: xm defaults to the basename, xl refuses -- let the dry run say
    'name = 5\n',
    'name = ""\n',
    'on_crash = restart\nname = "x"\n',
    'name = "x" "y"\n',
    'name = "unterminated\n',
])
def test_configs_that_are_not_plain_give_none(text):
    assert read_config_name(text) is None


@given(st.text(max_size=100))
def test_read_config_name_never_raises(text):
    read_config_name(text)


# -- xl info ---------------------------------------------------------------------------


def test_xl_info_fixture():
    info = parse_xl_info(fixture("xl_info.txt"))
    assert (info.total_memory_mib, info.free_memory_mib, info.nr_cpus, info.xen_version, info.host) == (
        16384, 6144, 4, "4.17.7-fake", "vm")
    assert info.raw["hw_caps"].count(":") == 7 and info.raw["xen_changeset"] == ""


def test_the_xen_release_is_read_from_xen_major_and_xen_minor_as_real_xl_prints_them():
    info = parse_xl_info((FIXTURES / "real-4.17/xl_info.stdout").read_text())
    assert info.xen_release == (4, 17) and info.xen_version == "4.17.7"
    assert parse_xl_info("xen_version            : 4.9.1\n").xen_release == (4, 9)  # no major/minor lines
    assert parse_xl_info("host                   : h\n").xen_release is None


def test_xm_info_version_from_major_minor_extra():
    info = parse_xl_info("host                   : h\nxen_major              : 4\nxen_minor              : 1\nxen_extra              : .3OVM\n")
    assert info.xen_version == "4.1.3OVM"


# -- merge -----------------------------------------------------------------------------


def test_merge_keeps_domains_without_stored_config_and_sorts_by_domid():
    long_entries = parse_xl_list_long(fixture("xl_listl.txt"))
    rows = parse_xl_list(fixture("xl_list.txt"))
    domains = merge_listing(long_entries, list(reversed(rows)))
    assert [d.domid for d in domains] == [0, 3, 4, 5, 7, 8, 9]
    assert [d.has_config for d in domains] == [True, True, False, False, False, False, False]
    deb = domains[1]
    assert (deb.name, deb.uuid, deb.memory_mib, deb.maxmem_mib, deb.vcpus, deb.domain_type) == (
        "debian12", "2f3c8e1a-6b5d-4c1e-9a7f-0d2b4e6f8a10", 1024, 1025, 2, "pvh")
    assert deb.state == DomainState.from_flags("-b----")
    assert domains[-1].zombie


def test_merge_keeps_a_long_entry_missing_from_the_plain_list_without_state():
    domains = merge_listing([LongEntry(5, "gone", target_memkb=2048)], [])
    assert domains[0].state is None and domains[0].name == "gone" and domains[0].memory_mib == 2


def test_merge_prefers_the_long_name_over_null_but_the_domain_stays_one_being_torn_down():
    rows = parse_xl_list(HEADER + "(null)                                       3  1024     2     -b----    5624.2\n")
    (d,) = merge_listing([LongEntry(3, "debian12")], rows)
    assert d.name == "debian12"
    # XenStore lost its name: libxl is destroying it (the listings ran a moment apart) — never a running guest
    assert d.nameless and d.zombie and not d.live and not d.running


@pytest.mark.parametrize("row", [
    "(null)                                       7    96     1     --ps--       2.9",  # right after a shutdown (real 4.17)
    "(null)                                       7    96     1     --ps-d       2.9",  # then dying
    "(null)                                       7    96     1     --p---       2.9",  # an xl destroy of a running guest
    "(null)                                       7     0     1     --p--d      17.1",  # a zombie (real 4.17)
])
def test_a_nameless_or_dying_row_is_never_a_running_guest(row):
    (d,) = merge_listing([], parse_xl_list(HEADER + row + "\n"))
    assert (d.name, d.nameless, d.zombie, d.live, d.running, d.has_config) == ("(null)", True, True, False, False, False)
    assert d.going.startswith("dying (" if d.state.dying else "being torn down (listed as (null), ")


def test_the_real_zombie_listing_gives_a_nameless_dying_domain_and_no_config():
    real = FIX / "real-4.17"
    domains = merge_listing(parse_xl_list_long((real / "xl_listl_zombie.stdout").read_text()),
                            parse_xl_list((real / "xl_list_zombie.stdout").read_text()))
    zombie = [d for d in domains if d.domid == 15]
    assert [(d.name, d.memory_mib, d.vcpus, d.state.flags) for d in zombie] == [("(null)", 0, 1, "--p--d")]
    assert zombie[0].zombie and zombie[0].nameless and not zombie[0].live and not zombie[0].has_config
