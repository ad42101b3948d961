// A pipeline's page: versions, description, parameters, graph, and a form that starts a run.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, enc, query, V1, V2 } from './api.js';
import { ApiErrorBox, formatTime, Loading, Page, show, useLoad } from './common.js';
import { Graph } from './graph.js';
import { href } from './route.js';
import { componentOf, convertParameter, dagGraph, formText, irOf, parametersOf, wiredInputs } from './spec.js';
import { templateKind, templateOf, v1RunBody, wiredArguments, workflowGraph, workflowOf, workflowParameters, workflowTasks } from './workflow.js';

export function PipelineDetailsPage({ id, versionId }) {
  const pipeline = useLoad(() => api(`${V2}/pipelines/${enc(id)}`), [id]);
  const versions = useLoad(
    () => api(`${V2}/pipelines/${enc(id)}/versions${query({ page_size: 200, sort_by: 'created_at desc' })}`),
    [id],
  );
  const list = versions.data?.pipeline_versions || [];
  const chosen = versionId || list[0]?.pipeline_version_id;
  const version = useLoad(
    () => (chosen ? api(`${V2}/pipelines/${enc(id)}/versions/${enc(chosen)}`) : Promise.resolve(null)),
    [id, chosen],
  );
  const [selected, setSelected] = useState(null);
  const p = pipeline.data;
  const v = version.data;
  // A V1 version's pipeline_spec is an Argo Workflow (template type V1), else a v2 IR.
  const wf = workflowOf(v?.pipeline_spec);
  const ir = wf ? null : irOf(v?.pipeline_spec);
  const params = wf ? workflowParameters(wf) : parametersOf(ir);
  const graph = wf ? workflowGraph(wf, wf.spec?.entrypoint, { exit: true }) : ir ? dagGraph(ir, ir.root) : { nodes: [], edges: [] };
  const v1Task = wf && selected ? v1PanelTask(wf, selected) : null;
  return html`
    <${Page} name="pipeline-details" title=${p ? `Pipeline ${p.display_name || p.name}` : 'Pipeline'}>
      <${ApiErrorBox} error=${pipeline.error || versions.error || version.error} />
      ${p &&
      html`<dl class="facts">
        <dt>Id</dt><dd>${p.pipeline_id}</dd>
        <dt>Description</dt><dd data-testid="pipeline-description">${p.description || '–'}</dd>
        <dt>Created</dt><dd>${formatTime(p.created_at)}</dd>
        <dt>Version</dt>
        <dd>
          <select data-testid="version-select" value=${chosen || ''} onChange=${(e) => (window.location.hash = href.pipeline(id, e.target.value))}>
            ${list.map((ver) => html`<option value=${ver.pipeline_version_id}>${ver.display_name || ver.name} (${formatTime(ver.created_at)})</option>`)}
          </select>
          ${list.length ? html` <span class="muted">${list.length} version${list.length === 1 ? '' : 's'}</span>` : ''}
        </dd>
        ${v ? html`<dt>Template type</dt><dd><span class="badge" data-testid="template-type" title=${wf ? 'KFP v1: an Argo Workflow' : 'KFP v2: a pipeline spec (IR)'}>${wf ? 'V1' : 'V2'}</span></dd>` : null}
        ${v?.description ? html`<dt>Version description</dt><dd data-testid="version-description">${v.description}</dd>` : null}
      </dl>`}
      ${version.loading && !v ? html`<${Loading} />` : null}
      ${versions.data && !list.length ? html`<p class="muted" data-testid="no-versions">This pipeline has no versions yet.</p>` : null}
      ${v &&
      html`
        <div class="columns">
          <div class="column-main">
            <h2>Graph</h2>
            <div class="graph-area">
              <${Graph} nodes=${graph.nodes} edges=${graph.edges} showStates=${false} selected=${selected} onSelect=${setSelected} />
              ${v1Task ? html`<${TemplatePanel} wf=${wf} taskKey=${selected} task=${v1Task} onClose=${() => setSelected(null)} />` : null}
              ${selected && ir?.root?.dag?.tasks?.[selected]
                ? html`<${ComponentPanel} ir=${ir} taskKey=${selected} task=${ir.root.dag.tasks[selected]} onClose=${() => setSelected(null)} />`
                : null}
            </div>
          </div>
          <div class="column-side">
            <h2>Parameters</h2>
            ${params.length
              ? html`<table class="table" data-testid="pipeline-params">
                  <thead><tr><th>name</th><th>type</th><th>default</th></tr></thead>
                  <tbody>
                    ${params.map(
                      (param) => html`<tr data-param=${param.name}>
                        <td><code>${param.name}</code>${param.description ? html`<div class="muted">${param.description}</div>` : null}</td>
                        <td>${param.type}</td>
                        <td>${param.hasDefault ? html`<code>${show(param.defaultValue)}</code>` : html`<span class="muted">required</span>`}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : html`<p class="muted">No parameters.</p>`}
            <h2>Start a run</h2>
            <${CreateRunForm} pipelineId=${id} version=${v} params=${params} v1=${Boolean(wf)} />
          </div>
        </div>`}
    <//>`;
}

function CreateRunForm({ pipelineId, version, params, v1 }) {
  const experiments = useLoad(() => api(`${V2}/experiments${query({ page_size: 200, sort_by: 'created_at desc' })}`), []);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError(null);
    const parameters = {};
    try {
      for (const param of params) {
        const text = String(form.get(param.name) ?? '');
        if (text === '' && param.type !== 'STRING') {
          if (param.optional) continue;
          throw new Error(`${param.name} is required`);
        }
        if (text === '' && !param.hasDefault && param.optional) continue;
        parameters[param.name] = convertParameter(param, text);
      }
    } catch (e) {
      setError(e);
      return;
    }
    const name = String(form.get('run-name') || '').trim() || `Run of ${version.display_name || version.name}`;
    const experiment = String(form.get('experiment') || '');
    setBusy(true);
    try {
      // KFP applies no v2beta1 runtime_config.parameters to a V1 run: its values go in a
      // v1beta1 run, as KFP's UI starts one (frontend/src/pages/NewRun.tsx).
      const runId = v1 ? (await api(`${V1}/runs`, { method: 'POST', body: v1RunBody(name, parameters, version, experiment) })).run.id : (await api(`${V2}/runs`, { method: 'POST', body: v2RunBody(name, parameters, pipelineId, version, experiment) })).run_id;
      window.location.hash = href.run(runId);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const exps = experiments.data?.experiments || [];
  return html`
    <form class="form" data-testid="create-run-form" onSubmit=${submit} key=${version.pipeline_version_id}>
      <label>Run name <input name="run-name" type="text" placeholder=${`Run of ${version.display_name || version.name}`} /></label>
      <label>Experiment
        <select name="experiment">
          ${exps.map((e) => html`<option value=${e.experiment_id} selected=${e.display_name === 'Default'}>${e.display_name}</option>`)}
        </select>
      </label>
      ${params.map(
        (param) => html`<label>
          <span><code>${param.name}</code> <span class="muted">${param.type}${param.optional ? '' : ', required'}</span></span>
          ${param.type === 'BOOLEAN'
            ? html`<select name=${param.name}>
                <option value="true" selected=${param.defaultValue === true}>true</option>
                <option value="false" selected=${param.defaultValue !== true}>false</option>
              </select>`
            : param.type === 'LIST' || param.type === 'STRUCT'
              ? html`<textarea name=${param.name} rows="2">${formText(param, param.defaultValue)}</textarea>`
              : html`<input name=${param.name} type="text" value=${formText(param, param.defaultValue)} />`}
        </label>`,
      )}
      <${ApiErrorBox} error=${error} />
      <button class="button primary" type="submit" data-testid="create-run-submit" disabled=${busy}>${busy ? 'Starting…' : 'Start run'}</button>
    </form>`;
}

function v2RunBody(name, parameters, pipelineId, version, experiment) {
  const body = {
    display_name: name,
    pipeline_version_reference: { pipeline_id: pipelineId, pipeline_version_id: version.pipeline_version_id },
    runtime_config: { parameters },
  };
  if (experiment) body.experiment_id = experiment;
  return body;
}

/** The entrypoint's task `key` of a workflow (or its exit handler), for its panel. */
function v1PanelTask(wf, key) {
  const task = workflowTasks(wf, wf.spec?.entrypoint).find((t) => t.key === key);
  if (task) return task;
  if (key === wf.spec?.onExit || key === wf.spec?.entrypoint) return { key, template: key, kind: templateKind(templateOf(wf, key)), after: [], when: '', arguments: {} };
  return null;
}

/** What a task of a V1 pipeline runs: its template's kind, image, command, arguments, outputs. */
function TemplatePanel({ wf, taskKey, task, onClose }) {
  const template = templateOf(wf, task.template) || {};
  const container = template.container || template.script;
  const outputs = [...(template.outputs?.parameters || []).map((p) => [p.name, 'parameter']), ...(template.outputs?.artifacts || []).map((a) => [a.name, 'artifact'])];
  const wired = wiredArguments(task);
  return html`
    <aside class="task-panel" data-testid="component-panel" data-task=${taskKey}>
      <header>
        <h3>${taskKey}</h3>
        <button class="button small" data-testid="task-close" onClick=${onClose} aria-label="Close">✕</button>
      </header>
      <dl class="facts">
        <dt>Template</dt><dd><code>${task.template}</code> <span class="muted">${task.kind}</span></dd>
        ${task.after?.length ? html`<dt>After</dt><dd>${task.after.join(', ')}</dd>` : null}
        ${task.when ? html`<dt>When</dt><dd><code>${task.when}</code></dd>` : null}
        ${container?.image ? html`<dt>Image</dt><dd><code>${container.image}</code></dd>` : null}
      </dl>
      <h4>Arguments</h4>
      ${wired.length
        ? html`<table class="table compact"><tbody>${wired.map((r) => html`<tr><td><code>${r.name}</code></td><td><code>${r.source}</code></td></tr>`)}</tbody></table>`
        : html`<p class="muted">None.</p>`}
      <h4>Outputs</h4>
      ${outputs.length
        ? html`<table class="table compact"><tbody>${outputs.map(([n, t]) => html`<tr><td><code>${n}</code></td><td>${t}</td></tr>`)}</tbody></table>`
        : html`<p class="muted">None.</p>`}
    </aside>`;
}

/** What a task of the pipeline runs: its component's inputs, outputs and container. */
function ComponentPanel({ ir, taskKey, task, onClose }) {
  const component = componentOf(ir, task);
  const executor = ir?.deploymentSpec?.executors?.[component.executorLabel];
  const container = executor?.container;
  const defs = (io) => [
    ...Object.entries(io?.parameters || {}).map(([name, d]) => [name, d.parameterType]),
    ...Object.entries(io?.artifacts || {}).map(([name, d]) => [name, d.artifactType?.schemaTitle || 'artifact']),
  ];
  const wired = wiredInputs(task);
  return html`
    <aside class="task-panel" data-testid="component-panel" data-task=${taskKey}>
      <header>
        <h3>${task.taskInfo?.name || taskKey}</h3>
        <button class="button small" data-testid="task-close" onClick=${onClose} aria-label="Close">✕</button>
      </header>
      <dl class="facts">
        <dt>Component</dt><dd><code>${task.componentRef?.name || '–'}</code></dd>
        ${task.dependentTasks?.length ? html`<dt>After</dt><dd>${task.dependentTasks.join(', ')}</dd>` : null}
        ${task.triggerPolicy?.condition ? html`<dt>Condition</dt><dd><code>${task.triggerPolicy.condition}</code></dd>` : null}
        ${container?.image ? html`<dt>Image</dt><dd><code>${container.image}</code></dd>` : null}
        ${task.cachingOptions?.enableCache !== undefined ? html`<dt>Caching</dt><dd>${task.cachingOptions.enableCache ? 'on' : 'off'}</dd>` : null}
      </dl>
      <h4>Inputs</h4>
      ${wired.length
        ? html`<table class="table compact"><tbody>${wired.map((r) => html`<tr><td><code>${r.name}</code></td><td>${r.source}</td></tr>`)}</tbody></table>`
        : html`<p class="muted">None.</p>`}
      <h4>Outputs</h4>
      ${defs(component.outputDefinitions).length
        ? html`<table class="table compact"><tbody>${defs(component.outputDefinitions).map(([n, t]) => html`<tr><td><code>${n}</code></td><td>${t}</td></tr>`)}</tbody></table>`
        : html`<p class="muted">None.</p>`}
    </aside>`;
}
