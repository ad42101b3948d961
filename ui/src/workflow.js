// Reading a KFP v1 pipeline (an Argo Workflow, template type V1) and the Argo nodes of its
// runs. KFP stores the workflow itself as a V1 version's pipeline_spec; its UI draws the
// entrypoint's DAG tasks with their dependencies (frontend/src/lib/StaticGraphParser.ts) and
// a run's nodes from the workflow's status (WorkflowParser.ts). Here a run's nodes come from
// its task_details (one entry per Argo node, docs/local-kfp.md), named as Argo names them:
// "<dag node>.<task>", "<steps node>[<i>].<step>", "<task>(<i>:<item>)" for an item,
// "<node>(<n>)" for a retry's attempt, "<workflow>.onExit" for the exit handler.
import { fnv32a, nameNodes } from './argo.js';

/** Whether a stored spec is an Argo Workflow (KFP's template.go isArgoWorkflow). */
export function isWorkflow(doc) {
  return Boolean(doc && typeof doc === 'object' && String(doc.apiVersion || '').startsWith('argoproj.io/') && doc.kind === 'Workflow');
}

/** The workflow of a stored pipeline_spec (an object or its JSON text), or null. */
export function workflowOf(stored) {
  let doc = stored;
  if (typeof doc === 'string') {
    try {
      doc = JSON.parse(doc);
    } catch (_) {
      return null;
    }
  }
  return isWorkflow(doc) ? doc : null;
}

/** The template named `name`, or undefined. */
export function templateOf(wf, name) {
  return (wf?.spec?.templates || []).find((t) => t?.name === name);
}

/** What a template runs: dag, steps, container, script, or the first other kind it has. */
export function templateKind(template) {
  if (!template) return 'unknown';
  for (const kind of ['dag', 'steps', 'container', 'script', 'resource', 'suspend', 'containerSet', 'http', 'data', 'plugin']) {
    if (template[kind]) return kind;
  }
  return 'unknown';
}

/**
 * The run parameters: spec.arguments.parameters, each a STRING (Argo's parameters are
 * strings), its `value` the default; without one it is required.
 */
export function workflowParameters(wf) {
  return (wf?.spec?.arguments?.parameters || []).map((p) => {
    const hasDefault = p.value !== undefined && p.value !== null;
    return {
      name: p.name,
      type: 'STRING',
      defaultValue: hasDefault ? String(p.value) : undefined,
      hasDefault,
      optional: hasDefault,
      description: p.description || '',
    };
  });
}

/** The task names a `depends` expression names ("a && (b.Succeeded || !c.Failed)"). */
export function dependsTasks(expression) {
  const names = new Set();
  for (const match of String(expression || '').matchAll(/[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z]+)?/g)) {
    names.add(match[0].replace(/\.(Succeeded|Failed|Errored|Skipped|Omitted|Daemoned|AnySucceeded|AllFailed)$/, ''));
  }
  return [...names];
}

/**
 * The tasks of a dag or steps template: [{key, template, kind, after: [keys], when, loop,
 * group}] (group: the step group's index, for a steps template).
 */
export function workflowTasks(wf, templateName) {
  const template = templateOf(wf, templateName);
  const kindOf = (name) => templateKind(templateOf(wf, name));
  const loop = (t) => Boolean(t.withItems || t.withParam || t.withSequence);
  if (template?.dag) {
    const tasks = template.dag.tasks || [];
    const keys = new Set(tasks.map((t) => t.name));
    return tasks.map((t) => ({
      key: t.name,
      template: t.template,
      kind: kindOf(t.template),
      after: [...(t.dependencies || []), ...(t.depends ? dependsTasks(t.depends) : [])].filter((k, i, all) => keys.has(k) && all.indexOf(k) === i),
      when: t.when || '',
      loop: loop(t),
      arguments: t.arguments || {},
    }));
  }
  if (template?.steps) {
    // Steps run group after group: each step of a group after every step of the group before.
    const out = [];
    let previous = [];
    template.steps.forEach((group, index) => {
      const steps = Array.isArray(group) ? group : group?.steps || [];
      for (const s of steps) {
        out.push({ key: s.name, template: s.template, kind: kindOf(s.template), after: previous, when: s.when || '', loop: loop(s), arguments: s.arguments || {}, group: index });
      }
      previous = steps.map((s) => s.name);
    });
    return out;
  }
  return [];
}

const GRAPH_KIND = { dag: 'dag', steps: 'dag', container: 'container', script: 'container' };

/**
 * A dag or steps template as graph nodes and edges; with `exit` (the root), the workflow's
 * exit handler (spec.onExit) as one more node, as KFP's StaticGraphParser adds it.
 */
export function workflowGraph(wf, templateName, { exit = false } = {}) {
  const tasks = workflowTasks(wf, templateName);
  const nodes = tasks.map((t) => ({
    id: t.key,
    label: t.key,
    kind: t.loop ? 'loop' : GRAPH_KIND[t.kind] || t.kind,
    component: t.template,
    condition: t.when,
    exit: false,
  }));
  const edges = tasks.flatMap((t) => t.after.map((from) => [from, t.key]));
  const onExit = wf?.spec?.onExit;
  if (exit && onExit && !nodes.some((n) => n.id === onExit)) {
    const kind = templateKind(templateOf(wf, onExit));
    nodes.push({ id: onExit, label: onExit, kind: GRAPH_KIND[kind] || kind, component: onExit, condition: '', exit: true });
  }
  // A workflow whose entrypoint runs a pod itself: that one node.
  if (!nodes.length && templateName && !tasks.length && ['container', 'script'].includes(templateKind(templateOf(wf, templateName)))) {
    nodes.push({ id: templateName, label: templateName, kind: 'container', component: templateName, condition: '', exit: false });
  }
  return { nodes, edges };
}

/** The pod of a node (Argo POD_NAMES v2, KFP's RetrievePodName): "<workflow>-<template>-<FNV-1a of its name>". */
export function workflowPod(workflow, nodeName, template) {
  return nodeName === workflow ? workflow : `${workflow}-${template}-${fnv32a(nodeName)}`;
}

/**
 * A V1 run's Argo nodes by name ({workflow, byName, id}), or null: the workflow's node is
 * the entry whose display name D has a child "D-<FNV-1a of D.<display>>" (or "D[<i>]").
 */
export function resolveWorkflowNodes(details) {
  if (!details?.length) return null;
  const displays = [...new Set(details.map((d) => d.display_name))];
  let workflow = null;
  for (const detail of details) {
    const name = detail.display_name;
    const children = new Set((detail.child_tasks || []).map((c) => c.pod_name));
    if (!children.size) continue;
    const found = displays.some((d) => children.has(`${name}-${fnv32a(d.startsWith('[') ? `${name}${d}` : `${name}.${d}`)}`));
    if (found) {
      workflow = name;
      break;
    }
  }
  if (!workflow) {
    // Nothing started below the workflow's node yet (or its entrypoint is a pod).
    const only = details.find((d) => !(d.child_tasks || []).length && !d.display_name.includes('.'));
    if (!only) return null;
    workflow = only.display_name;
  }
  const roots = details.map((d) => d.display_name).filter((d) => d === `${workflow}.onExit`);
  return nameNodes(details, workflow, roots);
}

/** A node's name with the attempt a retry ran last ("<node>(<n>)"), or the name itself. */
function lastAttempt(nodes, name) {
  let best = -1;
  for (const other of nodes.byName.keys()) {
    if (!other.startsWith(`${name}(`)) continue;
    const match = /^\((\d+)\)$/.exec(other.slice(name.length));
    if (match && Number(match[1]) > best) best = Number(match[1]);
  }
  return best >= 0 ? `${name}(${best})` : name;
}

/** Argo's states as KFP's task details give them; an Omitted node has none. */
function stateOf(detail) {
  return detail.state || 'OMITTED';
}

/**
 * The state of each task of the dag or steps template `templateName` run as the node
 * `prefix`: Map(key -> {node, state, podName, items: [{index, name, node, state, podName}]}).
 * With `exit`, the exit handler "<workflow>.onExit" under its template's name.
 */
export function workflowTaskStates(nodes, wf, prefix, templateName, { exit = false } = {}) {
  const out = new Map();
  if (!nodes || !prefix) return out;
  const podOf = (name, template) => {
    const kind = templateKind(templateOf(wf, template));
    return kind === 'container' || kind === 'script' ? workflowPod(nodes.workflow, lastAttempt(nodes, name), template) : null;
  };
  const entries = workflowTasks(wf, templateName).map((t) => [t, t.group === undefined ? `${prefix}.${t.key}` : `${prefix}[${t.group}].${t.key}`]);
  if (!entries.length && prefix === nodes.workflow && ['container', 'script'].includes(templateKind(templateOf(wf, templateName)))) {
    entries.push([{ key: templateName, template: templateName }, prefix]);
  }
  const onExit = wf?.spec?.onExit;
  if (exit && onExit) entries.push([{ key: onExit, template: onExit }, `${nodes.workflow}.onExit`]);
  for (const [task, name] of entries) {
    const node = nodes.byName.get(name);
    if (!node) continue;
    const items = [];
    for (const [other, detail] of nodes.byName) {
      if (!other.startsWith(`${name}(`)) continue;
      const match = /^\((\d+):.*\)$/.exec(other.slice(name.length));
      if (match) items.push({ index: Number(match[1]), name: other, node: detail, state: stateOf(detail), podName: podOf(other, task.template) });
    }
    items.sort((a, b) => a.index - b.index);
    out.set(task.key, { node, state: stateOf(node), podName: items.length ? null : podOf(name, task.template), items, template: task.template });
  }
  return out;
}

/**
 * A task's arguments as the workflow wires them: [{name, source}], `{{inputs.parameters.X}}`
 * of the entrypoint (and `{{workflow.parameters.X}}`) filled in with the run's values, and
 * `{{tasks.T.outputs.parameters.X}}` with what `taskOutput(T, X)` gives (if not undefined).
 */
export function wiredArguments(task, runParameters = {}, root = false, taskOutput = () => undefined) {
  const fill = (text) =>
    String(text ?? '')
      .replace(/\{\{\s*(inputs|workflow)\.parameters\.([A-Za-z0-9_-]+)\s*\}\}/g, (whole, scope, name) =>
        (scope === 'workflow' || root) && name in runParameters ? String(runParameters[name]) : whole,
      )
      .replace(/\{\{\s*tasks\.([A-Za-z0-9_-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}/g, (whole, producer, name) => {
        const value = taskOutput(producer, name);
        return value === undefined || value === null ? whole : String(value);
      });
  const out = [];
  for (const p of task?.arguments?.parameters || []) out.push({ name: p.name, source: fill(p.value) });
  for (const a of task?.arguments?.artifacts || []) out.push({ name: a.name, source: `artifact ${a.from || ''}`.trim() });
  return out;
}

/** A v1beta1 ApiRun: the values as pipeline_spec.parameters, the version and experiment as references. */
export function v1RunBody(name, parameters, version, experiment) {
  const references = [{ key: { type: 'PIPELINE_VERSION', id: version.pipeline_version_id }, relationship: 'CREATOR' }];
  if (experiment) references.unshift({ key: { type: 'EXPERIMENT', id: experiment }, relationship: 'OWNER' });
  return {
    name,
    pipeline_spec: { parameters: Object.entries(parameters).map(([key, value]) => ({ name: key, value: String(value) })) },
    resource_references: references,
  };
}
