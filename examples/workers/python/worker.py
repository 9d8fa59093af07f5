#!/usr/bin/env python3
"""An example external worker for orchestrator, standard library only.

    ORCHESTRATOR_API_KEY=orch_... python3 examples/workers/python/worker.py --server http://localhost:8084 --types python

The key (a worker key of the tenant) goes in Authorization: Bearer; the
server records it, with the worker id, on the events of every attempt.
Without one only a server in AUTH=local on this host answers.

It leases tasks of the given types, heartbeats while they run, and reports the
outcome. The work is a demonstration: it echoes the task's input after
sleeping input["sleep_ms"] milliseconds, and fails with input["fail_code"]
(not retryable when input["permanent"] is true).
"""
import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request


# HEADERS go with every request: the API key once main has read it.
HEADERS = {"Content-Type": "application/json"}


def post(base, path, body, timeout=70):
    """POSTs JSON; returns (status, decoded body or None)."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers=HEADERS, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
            return resp.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def heartbeat(base, lease, lease_for, stop):
    while not stop.wait(lease_for / 3):
        status, body = post(base, "/tasks/%s/heartbeat" % lease["id"],
                            {"lease_token": lease["lease_token"], "lease": "%ds" % lease_for})
        if status != 200:
            print("heartbeat %s: %s %s" % (lease["id"], status, body), file=sys.stderr)


def work(lease, worker_id):
    """The demonstration task: returns (output, fail_code, permanent)."""
    task_input = lease.get("input") or {}
    if isinstance(task_input, dict):
        time.sleep(task_input.get("sleep_ms", 0) / 1000)
        if task_input.get("fail_code"):
            return None, task_input["fail_code"], bool(task_input.get("permanent"))
    return {"echo": task_input, "attempt": lease["attempt"], "worker": worker_id}, None, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("ORCHESTRATOR_URL", "http://localhost:8084"))
    ap.add_argument("--types", default="python", help="comma-separated task types")
    ap.add_argument("--worker-id", default="%s-%d" % (socket.gethostname(), os.getpid()))
    ap.add_argument("--lease", type=int, default=10, help="lease length in seconds")
    ap.add_argument("--tenant", default="", help="tenant id; empty uses the short /v1 API")
    ap.add_argument("--api-key", default=os.environ.get("ORCHESTRATOR_API_KEY", ""),
                    help="API key of the worker (env ORCHESTRATOR_API_KEY, preferred: a flag shows in the process list)")
    args = ap.parse_args()
    if args.api_key:
        HEADERS["Authorization"] = "Bearer " + args.api_key
    base = args.server.rstrip("/") + ("/api/v1/tenants/%s" % args.tenant if args.tenant else "/v1")
    print("worker %s polling %s for %s" % (args.worker_id, base, args.types), file=sys.stderr)
    while True:
        try:
            status, lease = post(base, "/tasks/poll", {"types": args.types.split(","), "worker_id": args.worker_id,
                                                       "lease": "%ds" % args.lease, "wait": "20s"})
        except (urllib.error.URLError, OSError) as e:
            print("poll: %s" % e, file=sys.stderr)
            time.sleep(1)
            continue
        if status == 204:
            continue
        if status != 200:
            print("poll: %s %s" % (status, lease), file=sys.stderr)
            time.sleep(1)
            continue
        stop = threading.Event()
        threading.Thread(target=heartbeat, args=(base, lease, args.lease, stop), daemon=True).start()
        output, code, permanent = work(lease, args.worker_id)
        stop.set()
        if code:
            status, body = post(base, "/tasks/%s/fail" % lease["id"], {
                "lease_token": lease["lease_token"], "retryable": not permanent,
                "error": {"code": code, "message": "the example worker was asked to fail"}})
        else:
            status, body = post(base, "/tasks/%s/complete" % lease["id"],
                                {"lease_token": lease["lease_token"], "output": output})
        print("task %s reported: %s" % (lease["id"], status), file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
