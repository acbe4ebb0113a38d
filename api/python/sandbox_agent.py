"""Claim, renew and release SandboxSet sandboxes with the official Kubernetes
Python client (the ``kubernetes`` package; Debian's ``python3-kubernetes``).

A sandbox is a Pod of a SandboxSet's warm pool. An agent claims one with one
label patch, ``agents.kruise.io/claimed-by=<agent id>``, which the operator's
admission webhook judges against the Pod as stored, so of two agents racing
for one sandbox exactly one wins; the other gets 409 Conflict naming the
winner. The agent renews its sandbox by moving its shutdown time (an
annotation) and releases it by deleting the Pod. docs/agents.md explains the
protocol and the errors.

Each agent needs an id of its own: a claim by the holder's identity with the
holder's id changes nothing and succeeds, so two workers of one identity
sharing an id could both believe they won the same sandbox.

    import datetime
    from kubernetes import client, config
    import sandbox_agent

    config.load_kube_config()
    core = client.CoreV1Api()
    pod = sandbox_agent.claim(core, "default", "demo", "agent-1", wait=30)
    sandbox_agent.renew(core, pod, datetime.timedelta(minutes=30))
    sandbox_agent.release(core, pod)
"""

import datetime
import json
import random
import sys

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

POOL = "agents.kruise.io/sandboxset"
STATE = "agents.kruise.io/state"
CLAIMED_BY = "agents.kruise.io/claimed-by"
SHUTDOWN_TIME = "agents.kruise.io/shutdown-time"

# How the webhook names the holder label in its refusals.
HOLDER_FIELD = f"metadata.labels[{CLAIMED_BY}]"


class AlreadyClaimed(Exception):
    """409: another agent claimed the sandbox first. Try another one."""

    def __init__(self, sandbox, holder, message):
        super().__init__(message)
        self.sandbox, self.holder = sandbox, holder


class Refused(Exception):
    """422: the webhook refused the write. causes are the Status's causes:
    dicts with the field path ("field"), "reason" and "message"."""

    def __init__(self, sandbox, message, causes):
        super().__init__(message)
        self.sandbox, self.causes = sandbox, causes

    def unclaimable(self):
        """Whether the sandbox itself cannot be claimed (not Ready, being
        deleted), rather than the claim being wrong: then try another one."""
        return bool(self.causes) and all(
            c.get("field") == HOLDER_FIELD and c.get("reason") == "FieldValueForbidden"
            for c in self.causes)


class PoolEmpty(Exception):
    """No sandbox of the pool could be claimed in time."""


def shutdown_time(ttl):
    """The shutdown-time annotation's value for ttl from now: RFC 3339, UTC."""
    at = datetime.datetime.now(datetime.timezone.utc) + ttl
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(e):
    """The Kubernetes Status an ApiException carries, as a dict."""
    try:
        return json.loads(e.body)
    except (TypeError, ValueError):
        return {"message": str(e.reason)}


def _refused(name, e):
    status = _status(e)
    return Refused(name, status.get("message", ""), status.get("details", {}).get("causes", []))


def claim_sandbox(core, namespace, name, agent, ttl=None):
    """Claims one sandbox for agent, optionally with a shutdown time ttl (a
    timedelta) from now. Returns the claimed Pod, which the webhook has
    stamped: state=claimed, claimed-at, claimed-by-user, shutdown-time.

    Raises AlreadyClaimed (409) if another agent holds it, Refused (422) if
    the webhook refuses the claim, ApiException for anything else.
    """
    body = {"metadata": {"labels": {CLAIMED_BY: agent}}}
    if ttl is not None:
        body["metadata"]["annotations"] = {SHUTDOWN_TIME: shutdown_time(ttl)}
    try:
        # The client sends a dict as a strategic merge patch, as kubectl label
        # does; a merge patch would do the same here.
        return core.patch_namespaced_pod(name, namespace, body)
    except ApiException as e:
        if e.status == 409:
            message = _status(e).get("message", "")
            holder = message.rpartition("already claimed by ")[2]
            raise AlreadyClaimed(name, holder, message) from None
        if e.status == 422:
            raise _refused(name, e) from None
        raise


def _claimable(pod):
    return (pod.metadata.deletion_timestamp is None
            and CLAIMED_BY not in (pod.metadata.labels or {}))


def _stderr(line):
    print(line, file=sys.stderr)


def claim(core, namespace, pool, agent, ttl=None, wait=0, log=_stderr):
    """Claims an available sandbox of the SandboxSet pool for agent.

    It lists the pool's available sandboxes and tries them in random order
    (so agents claiming at once rarely aim at the same one), moving on when
    another agent wins one. If none is left it watches the pool, from the
    list's resourceVersion so that nothing is missed, for up to wait seconds
    and claims the first sandbox that becomes available.

    Raises PoolEmpty if nothing could be claimed, Refused if the claim
    itself is wrong (e.g. a shutdown time past the pool's claimLifetime.max).
    """
    selector = f"{POOL}={pool},{STATE}=available"

    def attempt(name):
        try:
            return claim_sandbox(core, namespace, name, agent, ttl)
        except AlreadyClaimed as e:
            log(f"{agent}: lost {name} to {e.holder}; trying the next")
        except Refused as e:
            if not e.unclaimable():
                raise
            log(f"{agent}: {name} cannot be claimed now; trying the next")
        except ApiException as e:
            if e.status != 404:
                raise
        return None

    pods = core.list_namespaced_pod(namespace, label_selector=selector)
    names = [p.metadata.name for p in pods.items if _claimable(p)]
    random.shuffle(names)
    for name in names:
        pod = attempt(name)
        if pod:
            return pod
    if wait > 0:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_pod, namespace, label_selector=selector,
                              resource_version=pods.metadata.resource_version,
                              timeout_seconds=wait):
            if event["type"] in ("ADDED", "MODIFIED") and _claimable(event["object"]):
                pod = attempt(event["object"].metadata.name)
                if pod:
                    w.stop()
                    return pod
    raise PoolEmpty(f"SandboxSet {namespace}/{pool} had no sandbox {agent} could claim"
                    + (f" within {wait}s" if wait > 0 else ""))


def renew(core, pod, ttl):
    """Moves the sandbox's shutdown time to ttl from now (sooner or later,
    up to the pool's claimLifetime.max). Only the identity that claimed it may.
    Returns the new shutdown time; raises Refused (422) past the maximum."""
    at = shutdown_time(ttl)
    body = {"metadata": {"annotations": {SHUTDOWN_TIME: at}}}
    try:
        core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body)
    except ApiException as e:
        if e.status == 422:
            raise _refused(pod.metadata.name, e) from None
        raise
    return at


def release(core, pod):
    """Gives the sandbox back by deleting its Pod; the pool refills with a
    fresh one. The UID precondition deletes exactly this Pod, never a
    namesake. A sandbox already gone is released."""
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
    try:
        core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body=options)
    except ApiException as e:
        if e.status != 404:
            raise
