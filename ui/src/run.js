// A run's page: state, times, parameters, the live graph, a task's panel, metrics, artifacts.
import { html } from 'htm/preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, apiText, enc, LOCAL, V2 } from './api.js';
import { resolveNodes, dagTaskStates } from './argo.js';
import { ConfusionMatrix, MetricsTable, RocCurve } from './charts.js';
import { ApiErrorBox, duration, FINAL_STATES, formatTime, Loading, Page, show, StateBadge, usePoll } from './common.js';
import { Graph } from './graph.js';
import { href } from './route.js';
import { componentOf, dagGraph, irOf, wiredInputs } from './spec.js';
import { WorkflowRunGraph } from './runv1.js';
import { workflowOf } from './workflow.js';

const POLL_MS = 1500;
const ACTIVE_RUN = new Set(['PENDING', 'RUNNING', 'CANCELING', 'PAUSED', 'RUNTIME_STATE_UNSPECIFIED']);

/** The run's spec: {ir} (KFP v2) or {wf} (a V1 run's Argo Workflow), or null. */
async function loadRunSpec(run) {
  const of = (stored) => {
    const wf = workflowOf(stored);
    if (wf) return { wf };
    const ir = irOf(stored);
    return ir ? { ir } : null;
  };
  const inline = of(run.pipeline_spec);
  if (inline) return inline;
  const ref = run.pipeline_version_reference;
  if (ref?.pipeline_id && ref?.pipeline_version_id) {
    const version = await api(`${V2}/pipelines/${enc(ref.pipeline_id)}/versions/${enc(ref.pipeline_version_id)}`);
    return of(version.pipeline_spec);
  }
  return null;
}

export function RunDetailsPage({ id, query }) {
  const [run, setRun] = useState(null);
  const [error, setError] = useState(null);
  const [ir, setIr] = useState(null);
  const [wf, setWf] = useState(null); // a V1 run's workflow
  const [tasks, setTasks] = useState(null); // the extension's task list
  const [tasksError, setTasksError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [scope, setScope] = useState([]); // [{key, iteration}] from the root DAG down
  const [selected, setSelected] = useState(query?.get('task') || null);
  const [restart, setRestart] = useState(0);
  const [experimentName, setExperimentName] = useState(null);
  const autoSelected = useRef(false);
  const specTried = useRef(false);
  const experimentAsked = useRef(false);

  const refresh = async () => {
    try {
      const next = await api(`${V2}/runs/${enc(id)}`);
      setRun(next);
      setError(null);
      if (next.experiment_id && !experimentAsked.current) {
        experimentAsked.current = true;
        api(`${V2}/experiments/${enc(next.experiment_id)}`).then(
          (e) => setExperimentName(e.display_name || next.experiment_id),
          () => setExperimentName(next.experiment_id),
        );
      }
      if (!specTried.current) {
        specTried.current = true;
        try {
          const spec = await loadRunSpec(next);
          setWf(spec?.wf || null);
          setIr(spec?.ir || false);
        } catch (e) {
          setIr(false);
          setError(e);
        }
      }
    } catch (e) {
      setError(e);
    }
    try {
      const ext = await api(`${LOCAL}/runs/${enc(id)}/tasks`);
      setTasks(ext.tasks || []);
      setTasksError(null);
    } catch (e) {
      setTasksError(e);
    }
  };
  useEffect(() => {
    setRun(null);
    setIr(null);
    setWf(null);
    specTried.current = false;
    setTasks(null);
    setScope([]);
    refresh();
  }, [id]);
  const active = run ? ACTIVE_RUN.has(run.state || 'RUNTIME_STATE_UNSPECIFIED') : false;
  usePoll(refresh, POLL_MS, active, [id, restart]);

  const act = async (verb) => {
    setBusy(true);
    setActionError(null);
    try {
      await api(`${V2}/runs/${enc(id)}:${verb}`, { method: 'POST' });
      await refresh();
      setRestart((n) => n + 1);
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };

  const nodes = useMemo(() => resolveNodes(run?.run_details?.task_details), [run]);
  const view = useMemo(() => scopeView(ir, nodes, scope), [ir, nodes, scope]);
  const states = useMemo(
    () => (view && nodes ? dagTaskStates(nodes, view.dagName, view.component?.dag?.tasks) : new Map()),
    [view, nodes],
  );
  const graph = useMemo(() => {
    if (!view) return { nodes: [], edges: [] };
    const g = dagGraph(ir, view.component);
    const idle = active ? 'PENDING' : 'NOT_STARTED';
    g.nodes = g.nodes.map((n) => ({ ...n, state: states.get(n.id)?.state || idle, cached: states.get(n.id)?.cached }));
    return g;
  }, [view, states, active]);

  // A failed run opens on its (first) failed task, as the question is what went wrong.
  useEffect(() => {
    if (autoSelected.current || selected || scope.length || run?.state !== 'FAILED' || !states.size) return;
    autoSelected.current = true;
    const failed = graph.nodes.find((n) => n.state === 'FAILED');
    if (failed) setSelected(failed.id);
  }, [run, states, graph]);

  const select = (key) => {
    setSelected(key);
    if (!scope.length) history.replaceState(null, '', `${href.run(id)}${key ? `?task=${encodeURIComponent(key)}` : ''}`);
  };
  const enter = (step) => {
    setScope([...scope, step]);
    setSelected(null);
  };

  if (!run) {
    return html`<${Page} name="run-details" title="Run">${error ? html`<${ApiErrorBox} error=${error} />` : html`<${Loading} />`}<//>`;
  }
  const archived = run.storage_state === 'ARCHIVED';
  const selectedTask = selected && view?.component?.dag?.tasks?.[selected];
  const artifacts = (tasks || []).flatMap((t) => [...(t.outputs?.artifacts || [])].map((a) => ({ ...a, task: a.task || t.name })));
  return html`
    <${Page}
      name="run-details"
      title=${`Run ${run.display_name || run.run_id}`}
      actions=${html`
        <button class="button" data-testid="terminate-run" disabled=${busy || !active || run.state === 'CANCELING'} onClick=${() => act('terminate')}>Terminate</button>
        <button class="button" data-testid="retry-run" disabled=${busy || !(run.state === 'FAILED' || run.state === 'CANCELED')} onClick=${() => act('retry')}>Retry</button>
        <button class="button" data-testid="archive-run" data-archived=${archived ? 'true' : 'false'} disabled=${busy} onClick=${() => act(archived ? 'unarchive' : 'archive')}>${archived ? 'Restore' : 'Archive'}</button>`}
    >
      <${ApiErrorBox} error=${error || actionError} />
      <dl class="facts">
        <dt>State</dt><dd><${StateBadge} state=${run.state} testid="run-state" />${active ? html` <span class="muted live">live</span>` : null}${archived ? html` <span class="badge">ARCHIVED</span>` : null}</dd>
        <dt>Run id</dt><dd><code>${run.run_id}</code></dd>
        <dt>Created</dt><dd>${formatTime(run.created_at)}</dd>
        <dt>Started</dt><dd>${formatTime(run.scheduled_at)}</dd>
        <dt>Finished</dt><dd>${formatTime(run.finished_at)}</dd>
        <dt>Duration</dt><dd>${duration(run.scheduled_at || run.created_at, active ? null : run.finished_at)}</dd>
        ${run.experiment_id ? html`<dt>Experiment</dt><dd><a href=${href.experiment(run.experiment_id)}>${experimentName || run.experiment_id}</a></dd>` : null}
        ${run.pipeline_version_reference?.pipeline_id
          ? html`<dt>Pipeline</dt><dd><a href=${href.pipeline(run.pipeline_version_reference.pipeline_id, run.pipeline_version_reference.pipeline_version_id)}>${run.pipeline_version_reference.pipeline_id}</a></dd>`
          : null}
        ${ir?.pipelineInfo?.name ? html`<dt>Pipeline spec</dt><dd><code>${ir.pipelineInfo.name}</code></dd>` : null}
        ${ir || wf ? html`<dt>Template type</dt><dd><span class="badge" data-testid="template-type">${wf ? 'V1' : 'V2'}</span></dd>` : null}
        ${run.recurring_run_id ? html`<dt>Recurring run</dt><dd><a href=${href.recurringRun(run.recurring_run_id)}>${run.recurring_run_id}</a></dd>` : null}
      </dl>
      ${run.error?.message ? html`<div class="run-error" data-testid="run-error">${run.error.message}</div>` : null}
      <h2>Parameters</h2>
      <${ParameterTable} values=${run.runtime_config?.parameters} />
      <h2>Graph</h2>
      <${Breadcrumbs} scope=${scope} setScope=${(s) => { setScope(s); setSelected(null); }} />
      ${wf
        ? html`<${WorkflowRunGraph} runId=${id} run=${run} wf=${wf} tasks=${tasks} tasksError=${tasksError} active=${active} />`
        : html`<div class="graph-area">
        ${ir
          ? html`<${Graph} nodes=${graph.nodes} edges=${graph.edges} selected=${selected} onSelect=${select} showStates=${true} />`
          : ir === false
            ? html`<p class="muted" data-testid="no-spec">The pipeline spec of this run is not available, so its graph cannot be drawn.</p>`
            : html`<${Loading} />`}
        ${selectedTask
          ? html`<${TaskPanel}
              runId=${id}
              taskKey=${selected}
              task=${selectedTask}
              ir=${ir}
              status=${states.get(selected)}
              ext=${matchTask(tasks, states.get(selected), view.path, selected)}
              extError=${tasksError}
              runParameters=${run.runtime_config?.parameters || {}}
              runActive=${active}
              onClose=${() => select(null)}
              onEnter=${enter}
            />`
          : null}
      </div>`}
      <h2>Metrics</h2>
      <${Metrics} artifacts=${artifacts} extError=${tasksError} />
      <h2>Artifacts</h2>
      <${ArtifactList} artifacts=${artifacts} extError=${tasksError} />
    <//>`;
}

/** The DAG a scope stack points at: {component, dagName, path}. */
function scopeView(ir, nodes, scope) {
  if (!ir) return null;
  let component = ir.root;
  let dagName = nodes ? `${nodes.workflow}.root` : null;
  let path = [];
  for (const step of scope) {
    const task = component?.dag?.tasks?.[step.key];
    if (!task) break;
    const state = nodes && dagName ? dagTaskStates(nodes, dagName, component.dag.tasks).get(step.key) : null;
    const taskName = state?.node?.node_name || (dagName ? `${dagName}.${step.key}` : null);
    component = componentOf(ir, task);
    if (step.iteration !== undefined) {
      dagName = taskName ? `${taskName}.iteration-iterations(${step.iteration}:${step.iteration}).iteration-item` : null;
      path = [...path, step.key, `iteration-${step.iteration}`];
    } else {
      dagName = taskName;
      path = [...path, step.key];
    }
  }
  return { component, dagName, path };
}

function matchTask(tasks, status, path, key) {
  if (!tasks) return null;
  const nodeId = status?.node?.node_id;
  return (
    (nodeId && tasks.find((t) => t.node_id === nodeId)) ||
    tasks.find((t) => t.name === key && JSON.stringify(t.path || []) === JSON.stringify(path)) ||
    null
  );
}

export function Breadcrumbs({ scope, setScope }) {
  if (!scope.length) return null;
  return html`<nav class="breadcrumbs" data-testid="graph-breadcrumbs">
    <button class="link" onClick=${() => setScope([])}>pipeline</button>
    ${scope.map(
      (step, i) => html` › <button class="link" onClick=${() => setScope(scope.slice(0, i + 1))}>${step.key}${step.iteration !== undefined ? ` [${step.iteration}]` : ''}</button>`,
    )}
  </nav>`;
}

function ParameterTable({ values, testid }) {
  const entries = Object.entries(values || {});
  if (!entries.length) return html`<p class="muted">None.</p>`;
  return html`<table class="table compact" data-testid=${testid || 'run-parameters'}>
    <tbody>${entries.map(([k, v]) => html`<tr data-param=${k}><td><code>${k}</code></td><td><code>${show(v)}</code></td></tr>`)}</tbody>
  </table>`;
}

function TaskPanel({ runId, taskKey, task, ir, status, ext, extError, runParameters, runActive, onClose, onEnter }) {
  const state = status?.state || (runActive ? 'PENDING' : 'NOT_STARTED');
  const kind = task.parameterIterator || task.artifactIterator ? 'loop' : componentOf(ir, task).dag ? 'dag' : 'container';
  const final = FINAL_STATES.has(state);
  const error = ext?.error;
  const inputs = ext?.inputs;
  const outputs = ext?.outputs;
  return html`
    <aside class="task-panel" data-testid="task-panel" data-task=${taskKey}>
      <header>
        <h3>${task.taskInfo?.name || taskKey}</h3>
        <button class="button small" data-testid="task-close" onClick=${onClose} aria-label="Close">✕</button>
      </header>
      <dl class="facts">
        <dt>State</dt><dd><${StateBadge} state=${state} testid="task-state" />${status?.cached ? html` <span class="muted">from cache</span>` : null}</dd>
        <dt>Started</dt><dd>${formatTime(status?.node?.start_time)}</dd>
        <dt>Finished</dt><dd>${formatTime(status?.node?.end_time)}</dd>
        <dt>Duration</dt><dd>${status ? duration(status.node.start_time, final ? status.node.end_time : null) : '–'}</dd>
      </dl>
      ${kind === 'dag' ? html`<button class="button" data-testid="open-sub-dag" onClick=${() => onEnter({ key: taskKey })}>Open its DAG</button>` : null}
      ${kind === 'loop'
        ? html`<div data-testid="loop-iterations"><h4>Iterations</h4>
            ${status?.iterations?.length
              ? status.iterations.map(
                  (it) => html`<button class="button small" onClick=${() => onEnter({ key: taskKey, iteration: it.index })}>#${it.index} <span class=${`dot state-${it.detail.state}`}></span> ${it.detail.state}</button> `,
                )
              : html`<p class="muted">No iteration has started.</p>`}
          </div>`
        : null}
      <${TaskError} state=${state} error=${error} />
      <div data-testid="task-inputs">
        <h4>Inputs</h4>
        ${inputs ? html`<${IoTable} io=${inputs} />` : html`<${WiredInputs} task=${task} runParameters=${runParameters} />`}
      </div>
      <div data-testid="task-outputs">
        <h4>Outputs</h4>
        ${outputs ? html`<${IoTable} io=${outputs} />` : html`<p class="muted">${extError ? `Outputs are not available (${extError.message}).` : final ? 'None.' : 'Not yet.'}</p>`}
      </div>
      ${kind === 'container' ? html`<${TaskLog} runId=${runId} podName=${status?.podName || ext?.pod_name} follow=${!final} cached=${status?.cached} />` : null}
    </aside>`;
}

function WiredInputs({ task, runParameters }) {
  const rows = wiredInputs(task, runParameters);
  if (!rows.length) return html`<p class="muted">None.</p>`;
  return html`<table class="table compact"><tbody>${rows.map((r) => html`<tr><td><code>${r.name}</code></td><td>${r.source}</td></tr>`)}</tbody></table>`;
}

/** A task's error: shown when it failed (its log says why when no message was recorded). */
export function TaskError({ state, error }) {
  if (state !== 'FAILED' && !error) return null;
  return html`<div class="task-error" data-testid="task-error"><h4>Error</h4><pre>${error || 'The task failed; its log below says why.'}</pre></div>`;
}

export function IoTable({ io }) {
  const params = Object.entries(io.parameters || {});
  const arts = io.artifacts || [];
  if (!params.length && !arts.length) return html`<p class="muted">None.</p>`;
  return html`<table class="table compact">
    <tbody>
      ${params.map(([k, v]) => html`<tr data-param=${k}><td><code>${k}</code></td><td><code>${show(v)}</code></td></tr>`)}
      ${arts.map((a) => html`<tr data-artifact=${a.name}><td><code>${a.name}</code></td><td><${ArtifactRef} artifact=${a} /></td></tr>`)}
    </tbody>
  </table>`;
}

function ArtifactRef({ artifact }) {
  const label = `${artifact.type || 'artifact'}`;
  return artifact.download
    ? html`<a data-testid="artifact-link" href=${artifact.download} download>${label}: download</a>`
    : html`<span class="muted">${label}${artifact.uri ? ` (${artifact.uri})` : ''}</span>`;
}

export function TaskLog({ runId, podName, follow, cached }) {
  const [text, setText] = useState(null);
  const [error, setError] = useState(null);
  const box = useRef(null);
  const atEnd = useRef(true);
  const load = async () => {
    if (!podName) return;
    try {
      const next = await apiText(`apis/v1alpha1/runs/${enc(runId)}/nodes/${enc(podName)}/log`);
      setText(next);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    setText(null);
    setError(null);
    load();
  }, [runId, podName, follow]);
  usePoll(load, POLL_MS, follow && Boolean(podName), [runId, podName]);
  useEffect(() => {
    if (box.current && atEnd.current) box.current.scrollTop = box.current.scrollHeight;
  }, [text]);
  const onScroll = (e) => {
    const el = e.currentTarget;
    atEnd.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  };
  let body;
  if (!podName) body = cached ? 'Taken from the cache: no pod ran, so there is no log.' : 'No log yet.';
  else if (text !== null) body = text || '(empty log)';
  else if (error) body = follow ? 'No log yet.' : `No log: ${error.message}`;
  else body = 'Loading…';
  return html`<div class="task-log-box">
    <h4>Log ${follow && podName ? html`<span class="muted live">following</span>` : null}</h4>
    <pre class="log" data-testid="task-log" ref=${box} onScroll=${onScroll}>${body}</pre>
  </div>`;
}

function Metrics({ artifacts, extError }) {
  const scalars = artifacts.filter((a) => a.type === 'system.Metrics');
  const classification = artifacts.filter((a) => a.type === 'system.ClassificationMetrics');
  if (!scalars.length && !classification.length) {
    return html`<p class="muted">${extError ? `Metrics are not available (${extError.message}).` : 'No metrics written.'}</p>`;
  }
  return html`<div class="metrics">
    <${MetricsTable} artifacts=${scalars} />
    ${classification.map(
      (a) => html`<div class="classification" data-artifact=${a.name}>
        <h3>${a.task} · ${a.name}</h3>
        <div class="charts">
          <${ConfusionMatrix} matrix=${a.metadata?.confusionMatrix} />
          <${RocCurve} points=${a.metadata?.confidenceMetrics} />
        </div>
      </div>`,
    )}
  </div>`;
}

function ArtifactList({ artifacts, extError }) {
  if (!artifacts.length) return html`<p class="muted">${extError ? `Artifacts are not available (${extError.message}).` : 'No artifacts.'}</p>`;
  return html`<table class="table">
    <thead><tr><th>task</th><th>artifact</th><th>type</th><th></th></tr></thead>
    <tbody>
      ${artifacts.map(
        (a) => html`<tr>
          <td>${a.task}</td><td><code>${a.name}</code></td><td>${a.type || ''}</td>
          <td>${a.download ? html`<a data-testid="artifact-link" href=${a.download} download>download</a>` : html`<span class="muted">${a.uri || ''}</span>`}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}
