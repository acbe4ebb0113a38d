"""The agent example's checks, run by the e2e suite (test/e2e/agents_test.go)
as an agent whose kubeconfig holds only its ServiceAccount token, against a
SandboxSet of `--sandboxes` warm sandboxes whose namespace's quota lets no
more Pods exist, with claimLifetime.max of 1h. It exits non-zero on the first
failed check and ends with one JSON line: the sandboxes held and by whom.

    python3 scenario.py --namespace NS --pool demo --sandboxes 4 --workers 20
"""

import argparse
import datetime
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, config

import sandbox_agent


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def check(ok, what):
    if not ok:
        raise AssertionError(what)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--sandboxes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args()
    ns, pool = args.namespace, args.pool
    config.load_kube_config()
    core = client.CoreV1Api()

    def holders():
        pods = core.list_namespaced_pod(ns, label_selector=sandbox_agent.CLAIMED_BY)
        return {p.metadata.name: p.metadata.labels[sandbox_agent.CLAIMED_BY]
                for p in pods.items if p.metadata.deletion_timestamp is None}

    log("step 1: a claim past claimLifetime.max is refused with 422 and the field")
    try:
        sandbox_agent.claim(core, ns, pool, "agent-greedy", ttl=datetime.timedelta(hours=2))
        check(False, "a claim 2h long from a pool with claimLifetime.max 1h was admitted")
    except sandbox_agent.Refused as e:
        log(f"  422: {e}")
        fields = [c.get("field") for c in e.causes]
        check(fields == ["metadata.annotations[agents.kruise.io/shutdown-time]"], f"causes: {e.causes}")
        check("claimLifetime.max" in e.causes[0]["message"], f"cause: {e.causes[0]}")
    check(holders() == {}, f"nothing is claimed after a refusal: {holders()}")

    log(f"step 2: {args.workers} workers race for {args.sandboxes} sandboxes")
    start = threading.Barrier(args.workers)
    lost = []

    def worker(i):
        agent = f"agent-{i}"
        core = client.CoreV1Api()  # each worker its own connections
        start.wait()
        try:
            return agent, sandbox_agent.claim(core, ns, pool, agent, log=lost.append).metadata.name
        except sandbox_agent.PoolEmpty:
            return agent, None

    with ThreadPoolExecutor(args.workers) as workers:
        results = list(workers.map(worker, range(args.workers)))
    won = [(agent, name) for agent, name in results if name]
    log(f"  winners: {won}; {len(lost)} lost races, e.g. {lost[:1]}")
    check(len(won) == args.sandboxes, f"{args.sandboxes} winners, not {len(won)}: {won}")
    check(len({name for _, name in won}) == len(won), f"a sandbox won twice: {won}")
    held = holders()
    check(held == {name: agent for agent, name in won}, f"stored holders {held} are the winners {won}")

    log("step 3: claiming a held sandbox is refused with 409 naming the holder")
    holder, name = won[0]
    try:
        sandbox_agent.claim_sandbox(core, ns, name, "agent-late")
        check(False, f"agent-late claimed {name}, held by {holder}")
    except sandbox_agent.AlreadyClaimed as e:
        log(f"  409: {e}")
        check(e.holder == holder, f"the 409 names {holder}: {e}")

    log("step 4: the holder renews its sandbox, within the maximum only")
    pod = core.read_namespaced_pod(name, ns)
    at = sandbox_agent.renew(core, pod, datetime.timedelta(minutes=30))
    stored = core.read_namespaced_pod(name, ns).metadata.annotations[sandbox_agent.SHUTDOWN_TIME]
    check(stored == at, f"shutdown time {stored}, not {at}")
    try:
        sandbox_agent.renew(core, pod, datetime.timedelta(hours=3))
        check(False, "a renewal past claimLifetime.max was admitted")
    except sandbox_agent.Refused as e:
        log(f"  422: {e}")
        check([c.get("field") for c in e.causes] == ["metadata.annotations[agents.kruise.io/shutdown-time]"], f"causes: {e.causes}")

    log("step 5: releasing it lets the pool refill, and a waiting agent gets the new sandbox through its watch")
    with ThreadPoolExecutor(1) as waiting:
        waiter = waiting.submit(sandbox_agent.claim, client.CoreV1Api(), ns, pool, "agent-waiting", wait=120)
        sandbox_agent.release(core, pod)
        refill = waiter.result().metadata.name
    log(f"  agent-waiting claimed {refill}")
    check(refill != name, f"agent-waiting got the released {name}")
    held = holders()
    want = {n: a for a, n in won if n != name}
    want[refill] = "agent-waiting"
    check(held == want, f"stored holders {held}, not {want}")
    print(json.dumps({"holders": held, "released": name}))


if __name__ == "__main__":
    main()
