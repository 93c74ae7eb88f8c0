/**
 * The layering rules of the README (Architecture), checked over the real import
 * graph of the sources (every `import`, `import type`, `export … from`,
 * `require` and `import()`, read with the TypeScript compiler's own
 * pre-processor). A rule broken by a new import fails this test with the file,
 * the import and the rule's reason.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '..');
/** Folders whose sources are checked (gateway/web is the browser page: it has its own generated code). */
const SCANNED = ['src', 'projections', 'test', 'loadtest', 'scripts'];

/** file (relative to the project) → the project files it imports (packages and node: builtins as written). */
type Graph = Map<string, string[]>;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules' && !name.startsWith('.')) out.push(...sources(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function resolveImport(from: string, spec: string): string {
  if (!spec.startsWith('.')) return spec;
  const base = resolve(dirname(join(ROOT, from)), spec);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts'), base]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return relative(ROOT, candidate).split('\\').join('/');
  }
  return relative(ROOT, base).split('\\').join('/');
}

function importGraph(): Graph {
  const graph: Graph = new Map();
  for (const dir of SCANNED) {
    for (const file of sources(join(ROOT, dir))) {
      const rel = relative(ROOT, file).split('\\').join('/');
      const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      graph.set(rel, importedFiles.map((f) => resolveImport(rel, f.fileName)));
    }
  }
  return graph;
}

/** Tests, contract suites and their helpers may import anything. */
const isTest = (f: string) => /\.test\.ts$|\.contract\.ts$/.test(f) || /^(test|loadtest)\//.test(f);

/** Engine adapters: one implementation of a port each (the ports are the `port.ts` files). */
const isAdapter = (f: string) =>
  /^src\/[^/]+\/(memory|mongo|mongo-client|mongo-batch|kafka|nats|embedded[^/]*|s3|local|local-http|openai|simulated|ffmpeg)\.ts$/.test(f) || /^src\/speech\/local\//.test(f);

/**
 * The composition root: the one place that picks adapters and wires them
 * (`src/app.ts`, `src/composition/` and each port's `factory.ts`), plus the CLI's own
 * entry for the embedded log it checks and repairs (`src/cli/`).
 */
const isCompositionRoot = (f: string) => f === 'src/app.ts' || /^src\/composition\//.test(f) || /^src\/[^/]+\/factory\.ts$/.test(f) || /^src\/cli\//.test(f);

/** The folder an adapter belongs to, e.g. src/speech for src/speech/local/adapters.ts. */
const portOf = (f: string) => f.split('/').slice(0, 2).join('/');
/** The engine an adapter drives, e.g. mongo for src/connections/mongo.ts and src/readstore/mongo-client.ts. */
const engineOf = (f: string) => f.split('/').pop()!.replace(/\.ts$/, '').split('-')[0];
/** An adapter may build on another of its port, or on a helper of its engine (one MongoDB client for both Mongo adapters). */
const related = (a: string, b: string) => isAdapter(a) && (portOf(a) === portOf(b) || engineOf(a) === engineOf(b));

interface Rule {
  name: string;
  why: string;
  /** True when `from` importing `to` breaks the rule. */
  broken(from: string, to: string): boolean;
}

const RULES: Rule[] = [
  {
    name: 'worker-speaks-the-domain',
    why: 'the worker publishes domain messages (src/bus/messages.ts); only the gateway knows client frames',
    broken: (from, to) => from.startsWith('src/worker/') && !isTest(from) && (to.startsWith('src/gateway/') || to === 'src/gen/chatflow/v1/chat.ts'),
  },
  {
    name: 'domain-is-pure',
    why: 'src/domain/ imports nothing but itself, the generated event types and node: builtins',
    broken: (from, to) =>
      from.startsWith('src/domain/') && !isTest(from) && !(to.startsWith('src/domain/') || to === 'src/gen/chatflow/v1/events.ts' || to.startsWith('node:')),
  },
  {
    name: 'adapters-only-from-the-composition-root',
    why: 'code depends on ports; only the composition root (and tests) picks an adapter',
    broken: (from, to) => isAdapter(to) && !isTest(from) && !isCompositionRoot(from) && !related(from, to),
  },
];

function violations(graph: Graph): string[] {
  const found: string[] = [];
  for (const [from, imports] of graph) {
    for (const to of imports) {
      for (const rule of RULES) if (rule.broken(from, to)) found.push(`${rule.name}: ${from} imports ${to} (${rule.why})`);
    }
  }
  return found;
}

describe('layering', () => {
  const graph = importGraph();

  it('reads the real sources (the worker, the domain, the gateway, the adapters and the composition root are all there)', () => {
    for (const f of ['src/worker/worker.ts', 'src/domain/errors.ts', 'src/gateway/chat-service.ts', 'src/bus/nats.ts', 'src/app.ts']) expect(graph.has(f)).toBe(true);
    expect(graph.get('src/worker/worker.ts')).toContain('src/bus/messages.ts');
    expect([...graph.keys()].filter(isAdapter).length).toBeGreaterThan(10);
  });

  it('keeps every rule', () => {
    expect(violations(graph)).toEqual([]);
  });

  // Each rule can fail: the real graph with one bad import added is caught, by that rule alone.
  it.each([
    ['worker-speaks-the-domain', 'src/worker/worker.ts', 'src/gateway/frames.ts'],
    ['worker-speaks-the-domain', 'src/worker/worker.ts', 'src/gen/chatflow/v1/chat.ts'],
    ['domain-is-pure', 'src/domain/admission.ts', 'src/connections/port.ts'],
    ['domain-is-pure', 'src/domain/ids.ts', 'pino'],
    ['adapters-only-from-the-composition-root', 'src/gateway/session.ts', 'src/eventlog/kafka.ts'],
    ['adapters-only-from-the-composition-root', 'src/worker/worker.ts', 'src/media/s3.ts'],
    ['adapters-only-from-the-composition-root', 'projections/runner.ts', 'src/readstore/mongo.ts'],
  ])('%s catches %s importing %s', (rule, from, to) => {
    const bad: Graph = new Map(graph);
    bad.set(from, [...(graph.get(from) ?? []), to]);
    expect(violations(bad).map((v) => v.split(':')[0])).toEqual([rule]);
  });

  it('lets the composition root, tests and contract suites import adapters', () => {
    const ok: Graph = new Map([
      ['src/app.ts', ['src/bus/nats.ts']],
      ['src/composition/open.ts', ['src/eventlog/kafka.ts']],
      ['src/bus/nats.int.test.ts', ['src/bus/nats.ts']],
      ['test/cluster.ts', ['src/connections/mongo.ts']],
    ]);
    expect(violations(ok)).toEqual([]);
  });
});
