// A run's task_details (KFP's Argo node tree on a cluster, docs/local-kfp.md) read back as
// pipeline tasks. Entries carry only display names and their children's Argo node ids; an
// Argo node id is "<workflow>-<FNV-1a 32 of the node's name>", and a child's name is an
// enclosing node's name + "." + its display name, so names are found by hashing.

export function fnv32a(text) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The run's Argo nodes by name: {workflow, byName: Map(name -> detail), id(name)}, or null. */
export function resolveNodes(details) {
  if (!details?.length) return null;
  let workflow = null;
  for (const detail of details) {
    const name = detail.display_name;
    const wanted = `${name}-${fnv32a(`${name}.root-driver`)}`;
    if ((detail.child_tasks || []).some((child) => child.pod_name === wanted)) {
      workflow = name;
      break;
    }
  }
  if (!workflow) return null;
  return nameNodes(details, workflow);
}

/**
 * The Argo node names of the task details of the workflow `workflow`, found from its own node
 * down ({workflow, byName, id}); `roots` are further nodes that hang from no other (a V1
 * run's exit handler, whose display name is its whole name).
 */
export function nameNodes(details, workflow, roots = []) {
  const id = (name) => (name === workflow ? workflow : `${workflow}-${fnv32a(name)}`);
  const childIds = new Set();
  for (const detail of details) for (const child of detail.child_tasks || []) childIds.add(child.pod_name);
  const displays = [...new Set(details.map((d) => d.display_name))];
  const names = new Map([[workflow, { name: workflow, display: workflow }]]); // id -> name
  for (const root of roots) names.set(id(root), { name: root, display: root });
  const tried = new Set();
  const queue = [workflow, ...roots];
  while (queue.length) {
    const name = queue.shift();
    const parts = name.split('.');
    for (let cut = parts.length; cut >= 1; cut -= 1) {
      const prefix = parts.slice(0, cut).join('.');
      if (tried.has(prefix)) continue;
      tried.add(prefix);
      for (const display of displays) {
        // A steps template's groups are "<node>[i]" (Argo's steps.go), everything else "<node>.<name>".
        const childName = display.startsWith('[') ? `${prefix}${display}` : `${prefix}.${display}`;
        const childId = id(childName);
        if (childIds.has(childId) && !names.has(childId)) {
          names.set(childId, { name: childName, display });
          queue.push(childName);
        }
      }
    }
  }
  // Entries are sorted by node id: among entries of one display name, the n-th is the
  // n-th of the names with that display name in id order.
  const byDisplay = new Map();
  for (const [nodeId, entry] of [...names.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    if (!byDisplay.has(entry.display)) byDisplay.set(entry.display, []);
    byDisplay.get(entry.display).push({ nodeId, name: entry.name });
  }
  const byName = new Map();
  const seen = new Map();
  for (const detail of details) {
    const list = byDisplay.get(detail.display_name) || [];
    const index = seen.get(detail.display_name) || 0;
    seen.set(detail.display_name, index + 1);
    if (list[index]) byName.set(list[index].name, { ...detail, node_id: list[index].nodeId, node_name: list[index].name });
  }
  return { workflow, byName, id };
}

/** The pod an executor node runs in (Argo POD_NAMES v2, as KFP's RetrievePodName). */
export function executorPod(executorNodeId) {
  const cut = executorNodeId.lastIndexOf('-');
  return `${executorNodeId.slice(0, cut)}-system-container-impl-${executorNodeId.slice(cut + 1)}`;
}

/**
 * The state of each task of the DAG node `dagName` (whose tasks are the keys of `tasks`):
 * Map(key -> {node, state, cached, podName, iterations}).
 */
export function dagTaskStates(nodes, dagName, tasks) {
  const out = new Map();
  if (!nodes) return out;
  const keys = Object.keys(tasks || {});
  for (const key of keys) {
    let node = nodes.byName.get(`${dagName}.${key}`);
    if (!node) {
      for (const host of keys) {
        node = nodes.byName.get(`${dagName}.${host}.onExit.${key}`);
        if (node) break;
      }
    }
    if (!node) continue;
    const executor = nodes.byName.get(`${node.node_name}.executor`);
    const iterations = [];
    const prefix = `${node.node_name}.iteration-iterations(`;
    for (const [name, detail] of nodes.byName) {
      const match = name.startsWith(prefix) && /^(\d+):\d+\)$/.exec(name.slice(prefix.length));
      if (match) iterations.push({ index: Number(match[1]), detail, body: `${name}.iteration-item` });
    }
    iterations.sort((a, b) => a.index - b.index);
    out.set(key, {
      node,
      state: node.state,
      cached: executor ? executor.state === 'SKIPPED' && node.state === 'SUCCEEDED' : false,
      executorId: executor?.node_id,
      podName: executor ? executorPod(executor.node_id) : null,
      iterations,
    });
  }
  return out;
}
