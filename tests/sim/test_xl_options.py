"""Option handling, errors and exit codes of the simulated xl (xen-reference §5.10, §4.1)."""

from __future__ import annotations

import pytest

from .helpers import FIXTURES, reference_host, run


@pytest.mark.parametrize(
    "args, stderr, code",
    [
        (["shutdown", "--halt", "3"], b"option `\0' not supported.\n", 2),
        (["shutdown", "-H", "3"], b"option `H' not supported.\n", 2),
        (["list", "-x"], b"option `x' not supported.\n", 2),
        (["migrate", "-l", "3", "host"], b"option `l' not supported.\n", 2),
        (["list", "nosuch"], b"nosuch is an invalid domain identifier (rc=-6)\n", 1),
        (["list", "99"], b"Error: Domain '99' does not exist.\n", 1),
        (["domid", "nosuch"], b"Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n", 1),
        (["domname", "42"], b"Can't get domain name of domain id '42', maybe this domain does not exist.\n", 1),
        (["domname", "abc"], b"Invalid domain id.\n\n", 1),
        (["shutdown"], b"You must specify -a or a domain id.\n\n", 1),
        (["destroy", "0"], b"Not destroying domain 0; use -f to force.\nThis can only be done when using a "
                           b"disaggregated hardware domain and toolstack.\n\n", 1),
        (["frobnicate"], b"command not implemented\n", 1),
        (["-x", "list"], b"unknown global option\n", 1),
        (["save", "3"], b"'xl save' requires at least 2 arguments.\n\n", 2),
        (["sysrq", "3"], b"'xl sysrq' requires at least 2 arguments.\n\n", 2),
    ],
)
def test_errors_print_the_real_message_and_exit_code(sim_env, sim_state, args, stderr, code):
    reference_host(sim_state, all_states=False)
    done = run("xl", *args)
    assert (done.stderr, done.returncode) == (stderr, code)


def test_shutdown_help_is_the_real_text(sim_env):
    done = run("xl", "shutdown", "-h")
    assert done.returncode == 0
    assert done.stdout == (
        b"Usage: xl [-vtTf] shutdown [options] <-a|Domain>\n\nIssue a shutdown signal to a domain.\n\n"
        b"Options:\n\n-a, --all               Shutdown all guest domains.\n"
        b"-h                      Print this help.\n"
        b"-F                      Fallback to ACPI power event for HVM guests with\n"
        b"                        no PV drivers.\n"
        b"-w, --wait              Wait for guest(s) to shutdown.\n\n"
    )


def test_subcommands_may_be_abbreviated_and_global_options_are_accepted(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    full = run("xl", "list").stdout
    assert run("xl", "li").stdout == full
    assert run("xl", "-v", "-t", "-T", "-f", "li").stdout == full
    assert run("xl", "sh", "3").stderr == b"command not implemented\n"  # shutdown / sharing: ambiguous


def test_sysrq_needs_one_letter_and_does_not_check_numeric_ids(sim_env, sim_state):
    reference_host(sim_state, all_states=False)
    assert run("xl", "sysrq", "99", "s").returncode == 0
    done = run("xl", "sysrq", "3", "ss")
    assert (done.stderr, done.returncode) == (b"Invalid sysrq.\n\n", 1)
    assert done.stdout.startswith(b"Usage: xl")


@pytest.mark.parametrize(
    "text, stderr",
    [
        ('name = "a"\nmemory = 1\nbad line here\n',
         b"bad.cfg:3: config parsing error near `line': syntax error, unexpected IDENT, expecting += or '='\n"
         b"Failed to parse config: Invalid argument\n"),
        ('NAME="a"\n', b"bad.cfg:1: config parsing error near `NAME=\"a\"': lexical error\n"
                       b"Failed to parse config: Invalid argument\n"),
        ('name="a" + "b"\n', b"bad.cfg:1: config parsing error near `+': lexical error\n"
                             b"warning: Config file looks like it contains Python code.\n"
                             b"warning:  Arbitrary Python is no longer supported.\n"
                             b"warning:  See https://wiki.xen.org/wiki/PythonInXlConfig\n"
                             b"Failed to parse config: Invalid argument\n"),
        ('memory = 512\nkernel = "/k"\n', b"Domain name must be specified.\n"),
        ('name = "a"\n', b"Neither kernel nor bootloader specified\n"),
    ],
)
def test_config_errors_are_reported_as_xl_reports_them(sim_env, tmp_path, monkeypatch, text, stderr):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.cfg").write_text(text)
    done = run("xl", "create", "--quiet", "--dryrun", "bad.cfg")
    assert (done.stderr, done.returncode) == (stderr, 1)


def test_missing_config_file_and_no_config_file(sim_env):
    done = run("xl", "create", "-q", "/nonexistent.cfg")
    assert (done.stderr, done.returncode) == (b"Failed to read config file: /nonexistent.cfg: No such file or "
                                              b"directory\n", 3)
    done = run("xl", "create", "-q")
    assert (done.stderr, done.returncode) == (b"Config file not specified and none in save file\n", 6)


def test_config_syntax_semicolons_appends_quoted_numbers_lists_and_overrides(sim_env, tmp_path):
    cfg = tmp_path / "g.cfg"
    cfg.write_text("# comment\nname='g'; type=\"pvh\"\nkernel = \"/k\" # trailing\nextra=\"x\"\n"
                   "extra+=\" y\"\nmemory=\"512\"\nvcpus = 0x2\ndisk = [ 'phy:/dev/a,xvda,w',\n"
                   "  'phy:/dev/b,xvdb,r', ]\nmaxmem=1024")
    done = run("xl", "create", "-q", "-n", str(cfg), 'name="override"')
    assert done.returncode == 0, done.stderr
    import json

    config = json.loads(done.stdout)
    assert config["c_info"]["name"] == "override"
    assert config["b_info"]["cmdline"] == "x y"
    assert config["b_info"]["target_memkb"] == 512 * 1024
    assert config["b_info"]["max_memkb"] == 1024 * 1024
    assert config["b_info"]["avail_vcpus"] == [0, 1]
    assert [d["vdev"] for d in config["disks"]] == ["xvda", "xvdb"]
    assert "readwrite" not in config["disks"][1]


def test_create_refuses_a_second_config_file(sim_env):
    cfg = str(FIXTURES / "debian12.cfg")
    done = run("xl", "create", "-q", "-n", cfg, cfg)
    assert done.returncode == 2
