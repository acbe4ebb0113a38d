// The agent example's checks, run by the e2e suite (test/e2e/agents_test.go)
// as an agent whose kubeconfig holds only its ServiceAccount token, against a
// SandboxSet of --sandboxes warm sandboxes whose namespace's quota lets no
// more Pods exist, with claimLifetime.max of 1h. It exits non-zero on the
// first failed check and ends with one JSON line: the sandboxes held and by
// whom.
//
//   node dist/scenario.js --namespace NS --pool demo --sandboxes 4 --workers 20

import { strict as assert } from 'node:assert';
import { parseArgs } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import {
  AlreadyClaimed, CLAIMED_BY, PoolEmpty, Refused, SHUTDOWN_TIME, claim, claimSandbox, release, renew,
} from './sandboxAgent.js';

const { values: args } = parseArgs({
  options: {
    namespace: { type: 'string' },
    pool: { type: 'string' },
    sandboxes: { type: 'string', default: '4' },
    workers: { type: 'string', default: '20' },
  },
});
if (!args.namespace || !args.pool) {
  console.error('usage: node dist/scenario.js --namespace NS --pool NAME [--sandboxes 4] [--workers 20]');
  process.exit(2);
}
const ns = args.namespace;
const pool = args.pool;
const sandboxes = Number(args.sandboxes);
const workers = Number(args.workers);
const log = (line: string) => console.error(line);

const kc = new KubeConfig();
kc.loadFromDefault();
const core = kc.makeApiClient(CoreV1Api);
const shutdownField = 'metadata.annotations[agents.kruise.io/shutdown-time]';

async function holders(): Promise<Record<string, string>> {
  const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: CLAIMED_BY });
  return Object.fromEntries(pods.items.filter((p) => !p.metadata!.deletionTimestamp)
    .map((p) => [p.metadata!.name!, p.metadata!.labels![CLAIMED_BY]]));
}

/** Runs f, which must throw an error of type T, and returns that error. */
async function refusal<T>(type: new (...args: never[]) => T, f: () => Promise<unknown>, what: string): Promise<T> {
  try {
    await f();
  } catch (e) {
    if (e instanceof type) return e;
    throw e;
  }
  assert.fail(what);
}

log('step 1: a claim past claimLifetime.max is refused with 422 and the field');
let refused = await refusal(Refused, () => claim(kc, core, ns, pool, 'agent-greedy', { ttlSeconds: 2 * 3600 }),
  'a claim 2h long from a pool with claimLifetime.max 1h was admitted');
log(`  422: ${refused.message}`);
assert.deepEqual(refused.causes.map((c) => c.field), [shutdownField]);
assert.match(refused.causes[0].message!, /claimLifetime\.max/);
assert.deepEqual(await holders(), {}, 'nothing is claimed after a refusal');

log(`step 2: ${workers} workers race for ${sandboxes} sandboxes`);
const lost: string[] = [];
const results = await Promise.all(Array.from({ length: workers }, async (_, i) => {
  const agent = `agent-${i}`;
  try {
    return [agent, (await claim(kc, core, ns, pool, agent, { log: (l) => lost.push(l) })).metadata!.name!];
  } catch (e) {
    if (e instanceof PoolEmpty) return [agent, undefined];
    throw e;
  }
}));
const won = results.filter((r): r is [string, string] => r[1] !== undefined);
log(`  winners: ${JSON.stringify(won)}; ${lost.length} lost races, e.g. ${JSON.stringify(lost.slice(0, 1))}`);
assert.equal(won.length, sandboxes, `${sandboxes} winners: ${JSON.stringify(won)}`);
assert.equal(new Set(won.map(([, name]) => name)).size, won.length, `a sandbox won twice: ${JSON.stringify(won)}`);
assert.deepEqual(await holders(), Object.fromEntries(won.map(([agent, name]) => [name, agent])));

log('step 3: claiming a held sandbox is refused with 409 naming the holder');
const [holder, name] = won[0];
const conflict = await refusal(AlreadyClaimed, () => claimSandbox(core, ns, name, 'agent-late'),
  `agent-late claimed ${name}, held by ${holder}`);
log(`  409: ${conflict.message}`);
assert.equal(conflict.holder, holder);

log('step 4: the holder renews its sandbox, within the maximum only');
const pod = await core.readNamespacedPod({ name, namespace: ns });
const at = await renew(core, pod, 30 * 60);
const stored = (await core.readNamespacedPod({ name, namespace: ns })).metadata!.annotations![SHUTDOWN_TIME];
assert.equal(stored, at);
refused = await refusal(Refused, () => renew(core, pod, 3 * 3600), 'a renewal past claimLifetime.max was admitted');
log(`  422: ${refused.message}`);
assert.deepEqual(refused.causes.map((c) => c.field), [shutdownField]);

log('step 5: releasing it lets the pool refill, and a waiting agent gets the new sandbox through its watch');
const waiter = claim(kc, core, ns, pool, 'agent-waiting', { waitSeconds: 120 });
await release(core, pod);
const refill = (await waiter).metadata!.name!;
log(`  agent-waiting claimed ${refill}`);
assert.notEqual(refill, name, `agent-waiting got the released ${name}`);
const want = Object.fromEntries(won.filter(([, n]) => n !== name).map(([agent, n]) => [n, agent]));
want[refill] = 'agent-waiting';
const held = await holders();
assert.deepEqual(held, want);
console.log(JSON.stringify({ holders: held, released: name }));
