// Claim, renew and release SandboxSet sandboxes with @kubernetes/client-node.
//
// A sandbox is a Pod of a SandboxSet's warm pool. An agent claims one with one
// label patch, agents.kruise.io/claimed-by=<agent id>, which the operator's
// admission webhook judges against the Pod as stored, so of two agents racing
// for one sandbox exactly one wins; the other gets 409 Conflict naming the
// winner. The agent renews its sandbox by moving its shutdown time (an
// annotation) and releases it by deleting the Pod. docs/agents.md explains
// the protocol and the errors.
//
// Each agent needs an id of its own: a claim by the holder's identity with the
// holder's id changes nothing and succeeds, so two workers of one identity
// sharing an id could both believe they won the same sandbox.
//
//   const kc = new KubeConfig();
//   kc.loadFromDefault();
//   const core = kc.makeApiClient(CoreV1Api);
//   const pod = await claim(kc, core, 'default', 'demo', 'agent-1', { waitSeconds: 30 });
//   await renew(core, pod, 30 * 60);
//   await release(core, pod);

import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  V1Pod,
  V1Status,
  V1StatusCause,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';

export const POOL = 'agents.kruise.io/sandboxset';
export const STATE = 'agents.kruise.io/state';
export const CLAIMED_BY = 'agents.kruise.io/claimed-by';
export const SHUTDOWN_TIME = 'agents.kruise.io/shutdown-time';

// How the webhook names the holder label in its refusals.
export const HOLDER_FIELD = `metadata.labels[${CLAIMED_BY}]`;

// A label patch as kubectl label sends it.
const strategicMerge = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

/** 409: another agent claimed the sandbox first. Try another one. */
export class AlreadyClaimed extends Error {
  constructor(readonly sandbox: string, readonly holder: string, message: string) {
    super(message);
  }
}

/** 422: the webhook refused the write; causes name each field and why. */
export class Refused extends Error {
  constructor(readonly sandbox: string, message: string, readonly causes: V1StatusCause[]) {
    super(message);
  }

  /** Whether the sandbox itself cannot be claimed (not Ready, being deleted),
   * rather than the claim being wrong: then try another one. */
  unclaimable(): boolean {
    return this.causes.length > 0 &&
      this.causes.every((c) => c.field === HOLDER_FIELD && c.reason === 'FieldValueForbidden');
  }
}

/** No sandbox of the pool could be claimed in time. */
export class PoolEmpty extends Error {}

export interface ClaimOptions {
  /** Sets the sandbox's shutdown time this many seconds from now. */
  ttlSeconds?: number;
  /** How long to watch for a sandbox to become available if none is. */
  waitSeconds?: number;
  /** Where lost races are reported. */
  log?: (line: string) => void;
}

/** The shutdown-time annotation's value for ttlSeconds from now: RFC 3339, UTC. */
export function shutdownTime(ttlSeconds: number): string {
  return new Date(Date.now() + ttlSeconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The Kubernetes Status an API error carries. */
function statusOf(e: ApiException<unknown>): V1Status {
  try {
    return typeof e.body === 'string' ? JSON.parse(e.body) : (e.body as V1Status);
  } catch {
    return { message: String(e.body) };
  }
}

function refused(name: string, e: ApiException<unknown>): Refused {
  const status = statusOf(e);
  return new Refused(name, status.message ?? '', status.details?.causes ?? []);
}

/**
 * Claims one sandbox for agent, optionally with a shutdown time. Returns the
 * claimed Pod, which the webhook has stamped: state=claimed, claimed-at,
 * claimed-by-user, shutdown-time.
 *
 * Throws AlreadyClaimed (409) if another agent holds it, Refused (422) if the
 * webhook refuses the claim, ApiException for anything else.
 */
export async function claimSandbox(core: CoreV1Api, namespace: string, name: string, agent: string,
  ttlSeconds?: number): Promise<V1Pod> {
  const body = {
    metadata: {
      labels: { [CLAIMED_BY]: agent },
      ...(ttlSeconds !== undefined && { annotations: { [SHUTDOWN_TIME]: shutdownTime(ttlSeconds) } }),
    },
  };
  try {
    return await core.patchNamespacedPod({ name, namespace, body }, strategicMerge);
  } catch (e) {
    if (e instanceof ApiException && e.code === 409) {
      const message = statusOf(e).message ?? '';
      throw new AlreadyClaimed(name, message.split('already claimed by ').pop() ?? '', message);
    }
    if (e instanceof ApiException && e.code === 422) {
      throw refused(name, e);
    }
    throw e;
  }
}

function claimable(pod: V1Pod): boolean {
  return !pod.metadata?.deletionTimestamp && !(CLAIMED_BY in (pod.metadata?.labels ?? {}));
}

/**
 * Claims an available sandbox of the SandboxSet pool for agent.
 *
 * It lists the pool's available sandboxes and tries them in random order (so
 * agents claiming at once rarely aim at the same one), moving on when another
 * agent wins one. If none is left it watches the pool, from the list's
 * resourceVersion so that nothing is missed, for up to waitSeconds and claims
 * the first sandbox that becomes available.
 *
 * Throws PoolEmpty if nothing could be claimed, Refused if the claim itself is
 * wrong (e.g. a shutdown time past the pool's claimLifetime.max).
 */
export async function claim(kc: KubeConfig, core: CoreV1Api, namespace: string, pool: string, agent: string,
  opts: ClaimOptions = {}): Promise<V1Pod> {
  const labelSelector = `${POOL}=${pool},${STATE}=available`;
  const log = opts.log ?? console.error;
  const attempt = async (name: string): Promise<V1Pod | undefined> => {
    try {
      return await claimSandbox(core, namespace, name, agent, opts.ttlSeconds);
    } catch (e) {
      if (e instanceof AlreadyClaimed) {
        log(`${agent}: lost ${name} to ${e.holder}; trying the next`);
      } else if (e instanceof Refused && e.unclaimable()) {
        log(`${agent}: ${name} cannot be claimed now; trying the next`);
      } else if (!(e instanceof ApiException && e.code === 404)) {
        throw e;
      }
      return undefined;
    }
  };

  const list = await core.listNamespacedPod({ namespace, labelSelector });
  const names = list.items.filter(claimable).map((p) => p.metadata!.name!);
  for (let i = names.length - 1; i > 0; i--) { // shuffle
    const j = Math.floor(Math.random() * (i + 1));
    [names[i], names[j]] = [names[j], names[i]];
  }
  for (const name of names) {
    const pod = await attempt(name);
    if (pod) return pod;
  }
  const wait = opts.waitSeconds ?? 0;
  if (wait > 0) {
    const query = { labelSelector, resourceVersion: list.metadata?.resourceVersion, timeoutSeconds: wait };
    for await (const { type, pod } of watchPods(kc, namespace, query)) {
      if ((type === 'ADDED' || type === 'MODIFIED') && claimable(pod)) {
        const claimed = await attempt(pod.metadata!.name!);
        if (claimed) return claimed;
      }
    }
  }
  throw new PoolEmpty(`SandboxSet ${namespace}/${pool} had no sandbox ${agent} could claim` +
    (wait > 0 ? ` within ${wait}s` : ''));
}

/** The watch's events, as an async iterable; leaving the loop ends the watch. */
async function* watchPods(kc: KubeConfig, namespace: string, query: Record<string, string | number | undefined>):
  AsyncGenerator<{ type: string; pod: V1Pod }> {
  const events: { type: string; pod: V1Pod }[] = [];
  let ended = false;
  let failure: unknown = null;
  let wake = () => {};
  const controller = await new Watch(kc).watch(`/api/v1/namespaces/${namespace}/pods`, query,
    (type, pod) => { events.push({ type, pod }); wake(); },
    (err) => { ended = true; failure = err; wake(); });
  try {
    for (;;) {
      for (let event; (event = events.shift());) {
        if (event.type === 'ERROR') throw new Error(`watching pods: ${(event.pod as V1Status).message}`);
        yield event;
      }
      if (ended) {
        if (failure) throw failure;
        return;
      }
      await new Promise<void>((resolve) => { wake = resolve; });
    }
  } finally {
    controller.abort();
  }
}

/**
 * Moves the sandbox's shutdown time to ttlSeconds from now (sooner or later,
 * up to the pool's claimLifetime.max). Only the identity that claimed it may.
 * Returns the new shutdown time; throws Refused (422) past the maximum.
 */
export async function renew(core: CoreV1Api, pod: V1Pod, ttlSeconds: number): Promise<string> {
  const at = shutdownTime(ttlSeconds);
  const body = { metadata: { annotations: { [SHUTDOWN_TIME]: at } } };
  const { name, namespace } = pod.metadata as { name: string; namespace: string };
  try {
    await core.patchNamespacedPod({ name, namespace, body }, strategicMerge);
  } catch (e) {
    if (e instanceof ApiException && e.code === 422) throw refused(name, e);
    throw e;
  }
  return at;
}

/**
 * Gives the sandbox back by deleting its Pod; the pool refills with a fresh
 * one. The UID precondition deletes exactly this Pod, never a namesake. A
 * sandbox already gone is released.
 */
export async function release(core: CoreV1Api, pod: V1Pod): Promise<void> {
  const { name, namespace, uid } = pod.metadata as { name: string; namespace: string; uid: string };
  try {
    await core.deleteNamespacedPod({ name, namespace, body: { preconditions: { uid } } });
  } catch (e) {
    if (!(e instanceof ApiException && e.code === 404)) throw e;
  }
}
