// Summarizes what grew between two V8 heap snapshots of one process
// (loadtest/memory-per-message.ts): self size by constructor/type, and
// retained size (dominator tree) of the objects that grew most, matched by
// their snapshot id (stable within a process). No dependency: the snapshot
// format is V8's JSON (meta.node_fields / edge_fields).
import { readFile } from 'node:fs/promises';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] }; node_count: number };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface Heap {
  count: number;
  cls: string[];
  ids: Float64Array;
  self: Float64Array;
  retained: Float64Array;
  /** A readable path to each node: "Parent.edge" of its first strong retainer. */
  label(i: number): string;
}

export async function loadHeap(file: string): Promise<Heap> {
  const s = JSON.parse(await readFile(file, 'utf8')) as Snapshot;
  const meta = s.snapshot.meta;
  const NF = meta.node_fields.length, EF = meta.edge_fields.length;
  const fType = meta.node_fields.indexOf('type'), fName = meta.node_fields.indexOf('name'), fId = meta.node_fields.indexOf('id');
  const fSelf = meta.node_fields.indexOf('self_size'), fEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type'), eName = meta.edge_fields.indexOf('name_or_index'), eTo = meta.edge_fields.indexOf('to_node');
  const nodeTypes = meta.node_types[0], edgeTypes = meta.edge_types[0];
  const weak = edgeTypes.indexOf('weak'), shortcut = edgeTypes.indexOf('shortcut');
  const named = new Set(['context', 'property', 'internal', 'shortcut', 'weak'].map((t) => edgeTypes.indexOf(t)));
  const n = s.nodes.length / NF;
  const cls: string[] = new Array(n);
  const ids = new Float64Array(n), self = new Float64Array(n);
  const firstEdge = new Uint32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    const t = nodeTypes[s.nodes[i * NF + fType]!]!;
    const name = s.strings[s.nodes[i * NF + fName]!]!;
    cls[i] = classOf(t, name);
    ids[i] = s.nodes[i * NF + fId]!;
    self[i] = s.nodes[i * NF + fSelf]!;
    firstEdge[i] = e;
    e += s.nodes[i * NF + fEdges]! * EF;
    firstEdge[i + 1] = e;
  }
  // Strong edges only, as successor lists; predecessors for the dominator pass.
  const predCount = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) {
    for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e += EF) {
      const t = s.edges[e + eType]!;
      if (t === weak || t === shortcut) continue;
      predCount[s.edges[e + eTo]! / NF]!++;
    }
  }
  const predStart = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) predStart[i + 1] = predStart[i]! + predCount[i]!;
  const preds = new Uint32Array(predStart[n]!);
  const predEdge = new Uint32Array(predStart[n]!);
  const fill = predStart.slice(0, n);
  for (let i = 0; i < n; i++) {
    for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e += EF) {
      const t = s.edges[e + eType]!;
      if (t === weak || t === shortcut) continue;
      const to = s.edges[e + eTo]! / NF;
      predEdge[fill[to]!] = e;
      preds[fill[to]!++] = i;
    }
  }
  // Depth-first postorder from the root (node 0), iteratively.
  const post = new Int32Array(n).fill(-1);
  const order: number[] = [];
  const stack = new Uint32Array(n), edgeAt = new Uint32Array(n);
  const seen = new Uint8Array(n);
  let sp = 0;
  stack[sp] = 0;
  edgeAt[sp] = firstEdge[0]!;
  seen[0] = 1;
  sp++;
  while (sp > 0) {
    const v = stack[sp - 1]!;
    let e = edgeAt[sp - 1]!;
    let pushed = false;
    while (e < firstEdge[v + 1]!) {
      const t = s.edges[e + eType]!;
      const to = s.edges[e + eTo]! / NF;
      e += EF;
      if (t === weak || t === shortcut || seen[to]) continue;
      edgeAt[sp - 1] = e;
      seen[to] = 1;
      stack[sp] = to;
      edgeAt[sp] = firstEdge[to]!;
      sp++;
      pushed = true;
      break;
    }
    if (!pushed) {
      post[v] = order.length;
      order.push(v);
      sp--;
    }
  }
  // Cooper, Harvey, Kennedy: "A Simple, Fast Dominance Algorithm".
  const idom = new Int32Array(n).fill(-1);
  idom[0] = 0;
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      while (post[a]! < post[b]!) a = idom[a]!;
      while (post[b]! < post[a]!) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = order.length - 2; k >= 0; k--) {
      const v = order[k]!;
      let d = -1;
      for (let p = predStart[v]!; p < predStart[v + 1]!; p++) {
        const u = preds[p]!;
        if (idom[u] === -1 || post[u] === -1) continue;
        d = d === -1 ? u : intersect(u, d);
      }
      if (d !== -1 && idom[v] !== d) {
        idom[v] = d;
        changed = true;
      }
    }
  }
  const retained = new Float64Array(n);
  for (const v of order) retained[v]! += self[v]!;
  for (const v of order) if (v !== 0 && idom[v]! >= 0) retained[idom[v]!]! += retained[v]!;
  const edgeName = (e: number) => {
    const t = s.edges[e + eType]!;
    const x = s.edges[e + eName]!;
    return named.has(t) ? s.strings[x]! : `[${x}]`;
  };
  return {
    count: n,
    cls,
    ids,
    self,
    retained,
    label(i) {
      const parts: string[] = [];
      let v = i;
      for (let depth = 0; depth < 5; depth++) {
        const p = predStart[v]! < predStart[v + 1]! ? predStart[v]! : -1;
        if (p < 0) break;
        // Prefer the dominator as the named parent when it retains this node directly.
        let best = p;
        for (let q = predStart[v]!; q < predStart[v + 1]!; q++) if (preds[q] === idom[v]) best = q;
        parts.unshift(`${cls[preds[best]!]}.${edgeName(predEdge[best]!)}`);
        v = preds[best]!;
        if (!cls[v]!.startsWith('(') && !GENERIC.has(cls[v]!)) break;
      }
      return `${parts.join(' → ')} → ${cls[i]}`;
    },
  };
}

/** Containers whose owner says more than they do: labels climb past them. */
const GENERIC = new Set(['Map', 'Set', 'Object', 'Array', 'system / Context']);

function classOf(type: string, name: string): string {
  switch (type) {
    case 'object':
      return name.length > 60 ? `${name.slice(0, 57)}...` : name;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(string)';
    case 'array':
      return `(array ${name})`;
    case 'hidden':
      return `(system ${name.replace(/^system \/ /, '').slice(0, 40)})`;
    case 'native':
      return `(native ${name.slice(0, 40)})`;
    default:
      return `(${type})`;
  }
}

const mb = (b: number) => (b / 1e6).toFixed(2);

/** Markdown: growth by class (self sizes) and the objects whose retained size grew most. */
export async function summarizeGrowth(baseFile: string, loadedFile: string, messages: number, top = 20): Promise<string> {
  const base = await loadHeap(baseFile);
  const byClass = (h: Heap) => {
    const m = new Map<string, { bytes: number; count: number }>();
    for (let i = 0; i < h.count; i++) {
      const c = m.get(h.cls[i]!) ?? { bytes: 0, count: 0 };
      c.bytes += h.self[i]!;
      c.count++;
      m.set(h.cls[i]!, c);
    }
    return m;
  };
  const baseClasses = byClass(base);
  const baseRetained = new Map<number, number>();
  for (let i = 0; i < base.count; i++) if (base.retained[i]! > 64 * 1024) baseRetained.set(base.ids[i]!, base.retained[i]!);
  const loaded = await loadHeap(loadedFile);
  const loadedClasses = byClass(loaded);
  const out: string[] = [];
  let total = 0;
  for (let i = 0; i < loaded.count; i++) total += loaded.self[i]!;
  let baseTotal = 0;
  for (let i = 0; i < base.count; i++) baseTotal += base.self[i]!;
  out.push(`Heap snapshots: ${mb(baseTotal)} → ${mb(total)} MB of objects (${base.count} → ${loaded.count} nodes): ${Math.round((total - baseTotal) / messages)} B per message.`);
  out.push('');
  out.push(`Growth by constructor or type (self sizes), top ${top}:`);
  out.push('');
  out.push('| constructor / type | count growth | per message | MB growth | B per message |');
  out.push('| --- | --- | --- | --- | --- |');
  const rows = [...loadedClasses].map(([k, v]) => {
    const b = baseClasses.get(k) ?? { bytes: 0, count: 0 };
    return { k, count: v.count - b.count, bytes: v.bytes - b.bytes };
  }).sort((a, b) => b.bytes - a.bytes).slice(0, top);
  for (const r of rows) out.push(`| ${r.k.replace(/\|/g, '\\|')} | ${r.count} | ${(r.count / messages).toFixed(2)} | ${mb(r.bytes)} | ${Math.round(r.bytes / messages)} |`);
  out.push('');
  out.push(`Objects whose retained size grew most (dominator tree; the same object in both snapshots; nested owners each appear), top ${top}:`);
  out.push('');
  out.push('| object (first retainer path) | retained MB base → loaded | B per message |');
  out.push('| --- | --- | --- |');
  const grown: { i: number; growth: number; before: number }[] = [];
  for (let i = 1; i < loaded.count; i++) {
    const before = baseRetained.get(loaded.ids[i]!) ?? 0;
    const growth = loaded.retained[i]! - before;
    if (growth > messages * 20) grown.push({ i, growth, before });
  }
  grown.sort((a, b) => b.growth - a.growth);
  for (const g of grown.filter((x) => !loaded.cls[x.i]!.startsWith('(system (GC roots')).slice(0, top)) {
    out.push(`| ${loaded.label(g.i).replace(/\|/g, '\\|')} | ${mb(g.before)} → ${mb(loaded.retained[g.i]!)} | ${Math.round(g.growth / messages)} |`);
  }
  return out.join('\n');
}

if (require.main === module) {
  const [a, b, n] = process.argv.slice(2);
  if (!a || !b) {
    console.error('usage: tsx loadtest/memory/heap-summary.ts BASE.heapsnapshot LOADED.heapsnapshot MESSAGES');
    process.exit(2);
  }
  void summarizeGrowth(a, b, Number(n ?? 1)).then((s) => console.log(s));
}
