"""One writer per output (issue 14, item 4): the lease on local disk and on S3 (moto's server)."""

import json
import socket
import subprocess
import sys
import threading
import time

import fsspec
import pytest
from fsspec.core import url_to_fs

from fv2es.score.lease import LEASE, LeaseHeld, LeaseLost, OutputLease


def lease_on(uri, options=None, ttl_s=120.0):
    fs, root = url_to_fs(uri, **(options or {}))
    return OutputLease(fs, root, uri, ttl_s)


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    """An output URI and its storage options, on disk and in a bucket."""
    if request.param == "local":
        return str(tmp_path / "out"), {}
    options = request.getfixturevalue("s3_endpoint")
    return f"s3://data/lease-{time.monotonic_ns()}", options


def read_record(uri, options):
    fs, root = url_to_fs(uri, **options)
    return json.loads(fs.cat_file(f"{root}/{LEASE}"))


def write_record(uri, options, **record):
    fs, root = url_to_fs(uri, **options)
    if not options:
        fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root}/{LEASE}", json.dumps(record).encode())


def test_a_second_holder_is_refused_naming_the_first_then_the_lease_is_released(output):
    uri, options = output
    with lease_on(uri, options) as first:
        record = read_record(uri, options)
        assert (record["holder"], record["host"], record["pid"]) == (first.holder, socket.gethostname(),
                                                                   first.pid)
        with pytest.raises(LeaseHeld) as refused:
            lease_on(uri, options).acquire()
        message = str(refused.value)
        assert f"run {first.holder} on host {socket.gethostname()}" in message and "--output" in message
        assert "\n" not in message
    fs, root = url_to_fs(uri, **options)
    assert not fs.exists(f"{root}/{LEASE}")
    with lease_on(uri, options):  # free again
        pass


def test_a_stale_lease_is_taken_over(output, caplog):
    uri, options = output
    # A holder on this host whose process is gone (a finished short-lived process's pid).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_record(uri, options, holder="deadrun", host=socket.gethostname(), pid=int(dead.stdout), heartbeat=time.time(),
                 ttl_s=120)
    with lease_on(uri, options) as taker:
        assert read_record(uri, options)["holder"] == taker.holder
    assert "took over the lease" in caplog.text and "process" in caplog.text
    # A holder on another host whose heartbeat stopped longer ago than its TTL.
    write_record(uri, options, holder="farrun", host="elsewhere", pid=1, heartbeat=time.time() - 100, ttl_s=60)
    with lease_on(uri, options) as taker:
        assert read_record(uri, options)["holder"] == taker.holder
    # ... but a live one on another host is not.
    write_record(uri, options, holder="liverun", host="elsewhere", pid=1, heartbeat=time.time(), ttl_s=60)
    with pytest.raises(LeaseHeld, match="run liverun on host elsewhere"):
        lease_on(uri, options).acquire()


def test_of_two_runs_taking_over_a_stale_lease_one_wins(output):
    uri, options = output
    write_record(uri, options, holder="farrun", host="elsewhere", pid=1, heartbeat=time.time() - 100, ttl_s=60)
    leases = [lease_on(uri, options) for _ in range(4)]
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(leases))

    def take(i):
        barrier.wait()
        try:
            leases[i].acquire()
            results[i] = "won"
        except LeaseHeld:
            results[i] = "refused"

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r == "won"]
    assert len(winners) == 1 and len(results) == len(leases)
    assert read_record(uri, options)["holder"] == leases[winners[0]].holder
    leases[winners[0]].release()


def test_the_heartbeat_refreshes_and_a_lost_lease_stops_commits(tmp_path):
    uri = str(tmp_path / "out")
    lease = lease_on(uri, ttl_s=0.4)
    lease.acquire()
    try:
        first = read_record(uri, {})["heartbeat"]
        time.sleep(0.35)
        assert read_record(uri, {})["heartbeat"] > first  # refreshed every ttl / 4
        lease.check()
        # Another run takes it over (as it may once this one looks stale): commits are refused.
        write_record(uri, {}, holder="other", host="elsewhere", pid=1, heartbeat=time.time(), ttl_s=60)
        deadline = time.time() + 5
        while lease.lost is None and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost, match="held by run other on host elsewhere"):
            lease.check()
    finally:
        lease.release()
    assert read_record(uri, {})["holder"] == "other"  # not ours: left in place


def test_the_lease_never_creates_a_bucket(s3_endpoint):
    with pytest.raises(FileNotFoundError):  # NoSuchBucket; run_score says so in one line before this
        lease_on("s3://no-such-bucket/out", s3_endpoint).acquire()
    assert not fsspec.filesystem("s3", **s3_endpoint).exists("no-such-bucket")
