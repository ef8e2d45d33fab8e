// Per-context state: root contexts (one per plugin configuration, each with its own table) and request
// contexts (pooled: steady-state requests create no GC objects).

import { PluginSettings, RequestFlow } from "../engine/flow";
import { RuleMetrics } from "./metrics";
import { HostRequestView } from "./view";

/** A plugin (root context): the table and settings of its configuration (engine/flow.ts), swapped in together. */
export class RootState extends PluginSettings {
  id: u32;
  /** The table's per-rule metrics (rules with `metrics: true`), or null. */
  ruleMetrics: RuleMetrics | null = null;

  constructor(id: u32) {
    super();
    this.id = id;
  }
}

/** One HTTP request (stream context): its view of the host and its flow through the hooks. */
export class RequestState {
  /** Index in `states` (the map's value). */
  slot: i32;
  id: u32 = 0;
  root: RootState | null = null;
  view: HostRequestView = new HostRequestView();
  flow: RequestFlow = new RequestFlow();

  constructor(slot: i32) {
    this.slot = slot;
  }

  release(): void {
    this.view.release();
    this.flow.reset();
    this.root = null;
    this.id = 0;
  }
}

const roots = new Array<RootState>();

export function findRoot(id: u32): RootState | null {
  for (let i = 0; i < roots.length; i++) {
    const r = unchecked(roots[i]);
    if (r.id == id) return r;
  }
  return null;
}

export function ensureRoot(id: u32): RootState {
  const r = findRoot(id);
  if (r !== null) return r;
  const n = new RootState(id);
  roots.push(n);
  return n;
}

export function removeRoot(id: u32): bool {
  for (let i = 0; i < roots.length; i++) {
    if (unchecked(roots[i]).id == id) {
      roots.splice(i, 1);
      return true;
    }
  }
  return false;
}

/** The root to use when a request arrives for a root we never saw: the most recently created one. */
export function anyRoot(): RootState | null {
  return roots.length > 0 ? unchecked(roots[roots.length - 1]) : null;
}

// Every RequestState ever created, and the free ones.
const states = new Array<RequestState>();
const free = new Array<i32>();

// Context id -> slot + 1, open addressing with linear probing and backward-shift deletion (no tombstones, so
// the table never degrades however many requests come and go). Context ids are never 0.
let mapKeys = new StaticArray<u32>(64);
let mapVals = new StaticArray<i32>(64);
let mapCount = 0;

// @ts-ignore: decorator
@inline function home(id: u32, mask: u32): u32 {
  return (id * 0x9e3779b1) & mask;
}

function mapFind(id: u32): i32 {
  const mask = <u32>mapKeys.length - 1;
  let i = home(id, mask);
  while (true) {
    const k = unchecked(mapKeys[i]);
    if (k == 0) return -1;
    if (k == id) return <i32>i;
    i = (i + 1) & mask;
  }
  return -1;
}

function mapPut(id: u32, slot: i32): void {
  if ((mapCount + 1) * 2 > mapKeys.length) grow();
  const mask = <u32>mapKeys.length - 1;
  let i = home(id, mask);
  while (true) {
    const k = unchecked(mapKeys[i]);
    if (k == 0 || k == id) break;
    i = (i + 1) & mask;
  }
  if (unchecked(mapKeys[i]) == 0) mapCount++;
  unchecked((mapKeys[i] = id));
  unchecked((mapVals[i] = slot));
}

function grow(): void {
  const oldKeys = mapKeys;
  const oldVals = mapVals;
  mapKeys = new StaticArray<u32>(oldKeys.length << 1);
  mapVals = new StaticArray<i32>(oldKeys.length << 1);
  mapCount = 0;
  for (let i = 0; i < oldKeys.length; i++) {
    const k = unchecked(oldKeys[i]);
    if (k != 0) mapPut(k, unchecked(oldVals[i]));
  }
}

function mapRemove(id: u32): void {
  const mask = <u32>mapKeys.length - 1;
  let i = <u32>mapFind(id);
  if (<i32>i < 0) return;
  mapCount--;
  // Backward-shift: pull later entries of the probe run into the hole.
  let j = i;
  while (true) {
    unchecked((mapKeys[i] = 0));
    while (true) {
      j = (j + 1) & mask;
      const k = unchecked(mapKeys[j]);
      if (k == 0) return;
      const h = home(k, mask);
      // Move k to i if its home is not cyclically in (i, j].
      if (i <= j ? h <= i || h > j : h <= i && h > j) break;
    }
    unchecked((mapKeys[i] = unchecked(mapKeys[j])));
    unchecked((mapVals[i] = unchecked(mapVals[j])));
    i = j;
  }
}

/** The request state of a context id, or null. */
export function findRequest(id: u32): RequestState | null {
  if (id == 0) return null;
  const i = mapFind(id);
  if (i < 0) return null;
  return unchecked(states[unchecked(mapVals[i])]);
}

/** A fresh request state for `id` (reusing a pooled one). An existing state for `id` is released first. */
export function createRequest(id: u32, root: RootState | null): RequestState {
  const existing = findRequest(id);
  if (existing !== null) {
    existing.release();
    existing.id = id;
    existing.root = root;
    return existing;
  }
  let st: RequestState;
  if (free.length > 0) {
    st = unchecked(states[free.pop()]);
  } else {
    st = new RequestState(states.length);
    states.push(st);
  }
  st.id = id;
  st.root = root;
  mapPut(id, st.slot);
  return st;
}

/** Releases the state of `id` back to the pool; false when `id` is not a request context. */
export function deleteRequest(id: u32): bool {
  const st = findRequest(id);
  if (st === null) return false;
  mapRemove(id);
  st.release();
  free.push(st.slot);
  return true;
}
