"""`echod check-config` on files with `listen` mapping entries (issue 13's per-listener options) and the `instance`
key: a good file prints every entry's effective values in a form that reads back; a bad one lists every problem with
its file, line and key, and exits 1. Nothing is served here: the echo path's tests are the tests/docs helper's."""

import re
import socket
import subprocess

from conftest import echod_binary

GOOD = """\
instance: web-1
listen:
  - 127.0.0.1:8888
  - address: 127.0.0.1:9000
    name: proxied
    proxy_protocol: v2
    proxy_protocol_from: [10.0.0.0/8, 127.0.0.1/32, "::1/128"]
    tag: banner
    tag_text: "{hostname} {instance}"
  - address: unix:@echod-test-tagged
    tag: prefix
  - address: "[::1]:9001"
"""

BAD = """\
listen:
  - 127.0.0.1:8888
  - address: 127.0.0.1:9000
    proxy_protocl: v2
    tag: bannr
    proxy_protocol_timeout: 90s
  - address: 127.0.0.1:9001
    proxy_protocol: v1
  - address: unix:/run/echod/x.sock
    proxy_protocol: any
    proxy_protocol_from: [10.0.0.0/8]
  - address: 127.0.0.1:9002
    tag: prefix
    tag_text: "{hostname}\\n"
  - address: 127.0.0.1:9003
    proxy_protocol: v2
    proxy_protocol_from: 10.0.0.0/8
  - 127.0.0.1:8888
udp:
  listen:
    - address: 127.0.0.1:7
"""


def check_config(tmp_path, text, *args, env=None):
    path = tmp_path / "echod.yaml"
    path.write_text(text)
    result = subprocess.run(
        [echod_binary(), "check-config", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    return path, result


def listen_line(stdout: str) -> str:
    return re.search(r"^listen: (.*?)\s+# .*$", stdout, re.M).group(1)


def test_good_file_shows_every_entry_and_reads_back(tmp_path):
    path, result = check_config(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("configuration OK\n")
    listen = listen_line(result.stdout)
    assert listen == (
        '["127.0.0.1:8888", {address: "127.0.0.1:9000", name: "proxied", proxy_protocol: v2, '
        'proxy_protocol_from: ["10.0.0.0/8", "127.0.0.1/32", "::1/128"], proxy_protocol_untrusted: refuse, '
        'proxy_protocol_timeout: 3s, tag: banner, tag_text: "{hostname} {instance}"}, '
        '{address: "unix:@echod-test-tagged", proxy_protocol: off, tag: prefix, tag_text: "{hostname}"}, "[::1]:9001"]'
    )
    assert re.search(rf'^instance: "web-1"\s+# file {re.escape(str(path))}$', result.stdout, re.M), result.stdout

    # What check-config prints is a configuration file that gives the same output.
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    _, again = check_config(again_dir, result.stdout.removesuffix("configuration OK\n"))
    assert again.returncode == 0, again.stderr
    assert listen_line(again.stdout) == listen


def test_bad_file_lists_every_problem_with_its_line(tmp_path):
    path, result = check_config(tmp_path, BAD)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "configuration invalid: 9 problem(s)", result.stderr
    expected = [
        (4, "listen[1].proxy_protocl", 'unknown key (did you mean "proxy_protocol"?)'),
        (5, "listen[1].tag", 'invalid value "bannr": expected one of off, banner, prefix, hostname-only'),
        (6, "listen[1].proxy_protocol_timeout", 'invalid value "90s": out of range; must be between 1s and 1m'),
        (8, "listen[2].proxy_protocol", "proxy_protocol_from is required with proxy_protocol v1 on a TCP listener"),
        (11, "listen[3].proxy_protocol_from", "not allowed on a unix: listener"),
        (14, "listen[4].tag_text", "contains a line feed; tag: prefix puts the tag before every line"),
        (17, "listen[5].proxy_protocol_from", "wrong type: expected a list of CIDR ranges"),
        (18, "listen[6]", 'invalid value "127.0.0.1:8888": listed twice (also item 0)'),
        (21, "udp.listen[0]", "per-listener options (proxy_protocol, tag) are for TCP and Unix stream listeners"),
    ]
    for (line, key, reason), text in zip(expected, lines, strict=False):
        assert text.startswith(f"error: {path}:{line}: {key}: "), f"{text!r} is not line {line} {key}\n{result.stderr}"
        assert reason in text, f"{reason!r} not in {text!r}"


def test_command_line_and_environment_replace_the_list_with_plain_addresses(tmp_path):
    _, by_flag = check_config(tmp_path, GOOD, "--listen", "127.0.0.1:7000", "--instance", "blue")
    assert by_flag.returncode == 0, by_flag.stderr
    assert re.search(r'^listen: \["127\.0\.0\.1:7000"\]\s+# command line --listen$', by_flag.stdout, re.M)
    assert re.search(r'^instance: "blue"\s+# command line --instance$', by_flag.stdout, re.M)
    _, by_env = check_config(tmp_path, GOOD, env={"ECHOD_LISTEN": "127.0.0.1:7001", "ECHOD_INSTANCE": ""})
    assert by_env.returncode == 0, by_env.stderr
    assert re.search(r'^listen: \["127\.0\.0\.1:7001"\]\s+# environment ECHOD_LISTEN$', by_env.stdout, re.M)
    # An empty ECHOD_INSTANCE is null: the host name, shown as the effective value.
    host = socket.gethostname()
    origin = rf'# environment ECHOD_INSTANCE; null = the host name, "{re.escape(host)}"$'
    assert re.search(rf"^instance: null\s+{origin}", by_env.stdout, re.M), by_env.stdout
