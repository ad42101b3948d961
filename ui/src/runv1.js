// The graph and task panel of a KFP v1 run (an Argo Workflow): one graph node per task of
// the dag or steps template shown, its state from the run's task_details (one entry per Argo
// node), a click shows the task's log (by its pod name), arguments, outputs and error.
import { html } from 'htm/preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { duration, FINAL_STATES, formatTime, StateBadge } from './common.js';
import { Graph } from './graph.js';
import { Breadcrumbs, IoTable, TaskError, TaskLog } from './run.js';
import { resolveWorkflowNodes, templateKind, templateOf, wiredArguments, workflowGraph, workflowTasks, workflowTaskStates } from './workflow.js';

const POD_KINDS = new Set(['container', 'script']);

/** The template and node a scope stack points at: {template, prefix, path}. */
function scopeView(wf, nodes, scope) {
  let template = wf.spec?.entrypoint;
  let prefix = nodes?.workflow || null;
  for (const step of scope) {
    const task = workflowTasks(wf, template).find((t) => t.key === step.key);
    if (!task) break;
    const state = nodes && prefix ? workflowTaskStates(nodes, wf, prefix, template).get(step.key) : null;
    template = task.template;
    if (step.iteration !== undefined) prefix = state?.items.find((it) => it.index === step.iteration)?.name || null;
    else prefix = state?.node?.node_name || null;
  }
  return { template, prefix, root: !scope.length };
}

/** Whether task key `key` of the view can be opened: a dag or steps template, not a loop. */
function opens(wf, task) {
  const kind = templateKind(templateOf(wf, task?.template));
  return kind === 'dag' || kind === 'steps';
}

export function WorkflowRunGraph({ runId, run, wf, tasks, tasksError, active }) {
  const [scope, setScope] = useState([]);
  const [selected, setSelected] = useState(null);
  const autoSelected = useRef(false);
  const nodes = useMemo(() => resolveWorkflowNodes(run?.run_details?.task_details), [run]);
  const view = useMemo(() => scopeView(wf, nodes, scope), [wf, nodes, scope]);
  const states = useMemo(
    () => (nodes && view.prefix ? workflowTaskStates(nodes, wf, view.prefix, view.template, { exit: view.root }) : new Map()),
    [nodes, wf, view],
  );
  const graph = useMemo(() => {
    const g = workflowGraph(wf, view.template, { exit: view.root });
    const idle = active ? 'PENDING' : 'NOT_STARTED';
    g.nodes = g.nodes.map((n) => ({ ...n, state: states.get(n.id)?.state || idle }));
    return g;
  }, [wf, view, states, active]);

  // A failed run opens on its (first) failed task, as the question is what went wrong.
  useEffect(() => {
    if (autoSelected.current || selected || scope.length || run?.state !== 'FAILED' || !states.size) return;
    autoSelected.current = true;
    const failed = graph.nodes.find((n) => n.state === 'FAILED' && !n.exit) || graph.nodes.find((n) => n.state === 'FAILED');
    if (failed) setSelected(failed.id);
  }, [run, states, graph]);

  const enter = (step) => {
    setScope([...scope, step]);
    setSelected(null);
  };
  const task = selected
    ? workflowTasks(wf, view.template).find((t) => t.key === selected) ||
      (graph.nodes.some((n) => n.id === selected) ? { key: selected, template: selected, arguments: {} } : null)
    : null;
  const status = selected ? states.get(selected) : null;
  return html`
    <${Breadcrumbs} scope=${scope} setScope=${(s) => { setScope(s); setSelected(null); }} />
    <div class="graph-area">
      <${Graph} nodes=${graph.nodes} edges=${graph.edges} selected=${selected} onSelect=${setSelected} showStates=${true} />
      ${task
        ? html`<${WorkflowTaskPanel}
            runId=${runId}
            run=${run}
            wf=${wf}
            task=${task}
            status=${status}
            ext=${matchTask(tasks, nodes, status?.node?.node_name)}
            taskOutput=${(producer, name) => matchTask(tasks, nodes, view.prefix && `${view.prefix}.${producer}`)?.outputs?.parameters?.[name]}
            extError=${tasksError}
            root=${view.root}
            runActive=${active}
            onClose=${() => setSelected(null)}
            onEnter=${enter}
          />`
        : null}
    </div>`;
}

/** The extension's record of a node: by its node id, or by `path` + `name` (its name split at dots). */
function matchTask(tasks, nodes, nodeName) {
  if (!tasks || !nodeName) return null;
  const nodeId = nodes?.id(nodeName);
  return tasks.find((t) => t.node_id === nodeId) || tasks.find((t) => [...(t.path || []), t.name].join('.') === nodeName) || null;
}

function WorkflowTaskPanel({ runId, run, wf, task, status, ext, extError, taskOutput, root, runActive, onClose, onEnter }) {
  const [item, setItem] = useState(null); // the loop item whose log is shown
  const state = status?.state || (runActive ? 'PENDING' : 'NOT_STARTED');
  const final = FINAL_STATES.has(state) || state === 'OMITTED';
  const kind = templateKind(templateOf(wf, task.template));
  const items = status?.items || [];
  const shownItem = items.find((it) => it.index === item) || null;
  const podName = shownItem ? shownItem.podName : status?.podName;
  // KFP's task details carry no error for V1; the run's error names its failed task.
  const runError = run.error?.message && run.error.message.includes(`'${task.key}'`) ? run.error.message : '';
  const error = ext?.error || runError;
  const outputs = ext?.outputs;
  const hasOutputs = outputs && (Object.keys(outputs.parameters || {}).length || (outputs.artifacts || []).length);
  const extInputs = ext?.inputs && (Object.keys(ext.inputs.parameters || {}).length || (ext.inputs.artifacts || []).length) ? ext.inputs : null;
  const wired = wiredArguments(task, run.runtime_config?.parameters || {}, root, taskOutput);
  return html`
    <aside class="task-panel" data-testid="task-panel" data-task=${task.key}>
      <header>
        <h3>${task.key}</h3>
        <button class="button small" data-testid="task-close" onClick=${onClose} aria-label="Close">✕</button>
      </header>
      <dl class="facts">
        <dt>State</dt><dd><${StateBadge} state=${state} testid="task-state" /></dd>
        <dt>Template</dt><dd><code>${task.template}</code> <span class="muted">${kind}</span></dd>
        <dt>Started</dt><dd>${formatTime(status?.node?.start_time)}</dd>
        <dt>Finished</dt><dd>${formatTime(status?.node?.end_time)}</dd>
        <dt>Duration</dt><dd>${status ? duration(status.node.start_time, final ? status.node.end_time : null) : '–'}</dd>
        ${podName ? html`<dt>Pod</dt><dd><code>${podName}</code></dd>` : null}
      </dl>
      ${opens(wf, task) && !task.loop ? html`<button class="button" data-testid="open-sub-dag" onClick=${() => onEnter({ key: task.key })}>Open its DAG</button>` : null}
      ${task.loop
        ? html`<div data-testid="loop-iterations"><h4>Items</h4>
            ${items.length
              ? items.map(
                  (it) => html`<button class=${`button small${it.index === item ? ' selected' : ''}`} onClick=${() => (opens(wf, task) ? onEnter({ key: task.key, iteration: it.index }) : setItem(it.index))}>#${it.index} <span class=${`dot state-${it.state}`}></span> ${it.state}</button> `,
                )
              : html`<p class="muted">No item has started.</p>`}
          </div>`
        : null}
      <${TaskError} state=${state} error=${error} />
      <div data-testid="task-inputs">
        <h4>Inputs</h4>
        ${extInputs
          ? html`<${IoTable} io=${extInputs} />`
          : wired.length
            ? html`<table class="table compact"><tbody>${wired.map((r) => html`<tr data-param=${r.name}><td><code>${r.name}</code></td><td><code>${r.source}</code></td></tr>`)}</tbody></table>`
            : html`<p class="muted">None.</p>`}
      </div>
      <div data-testid="task-outputs">
        <h4>Outputs</h4>
        ${hasOutputs
          ? html`<${IoTable} io=${outputs} />`
          : html`<p class="muted">${extError ? `Outputs are not available (${extError.message}).` : final ? 'None.' : 'Not yet.'}</p>`}
      </div>
      ${POD_KINDS.has(kind) && (!task.loop || shownItem)
        ? html`<${TaskLog} runId=${runId} podName=${podName} follow=${!final && !(shownItem && FINAL_STATES.has(shownItem.state))} />`
        : null}
    </aside>`;
}
