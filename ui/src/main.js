// The embedded KFP server's web UI: KFP's hash routes, pages on its v2beta1 REST API.
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { api, enc, V2 } from './api.js';
import { ApiErrorBox, formatTime, Loading, Page, show, useLoad } from './common.js';
import { ExperimentDetailsPage, ExperimentsPage, PipelinesPage, RecurringRunsPage, RunsPage } from './lists.js';
import { PipelineDetailsPage } from './pipeline.js';
import { href, useRoute } from './route.js';
import { RunDetailsPage } from './run.js';

const NAV = [
  ['Pipelines', href.pipelines(), ['pipelines', 'pipeline-details']],
  ['Experiments', href.experiments(), ['experiments', 'experiment-details']],
  ['Runs', href.runs(), ['runs', 'run-details']],
  ['Recurring runs', href.recurringRuns(), ['recurring-runs', 'recurring-run-details']],
];

function RecurringRunDetailsPage({ id }) {
  const rr = useLoad(() => api(`${V2}/recurringruns/${enc(id)}`), [id]);
  const r = rr.data;
  return html`<${Page} name="recurring-run-details" title=${r ? `Recurring run ${r.display_name}` : 'Recurring run'}>
    <${ApiErrorBox} error=${rr.error} />
    ${rr.loading && !r ? html`<${Loading} />` : null}
    ${r &&
    html`<dl class="facts">
      <dt>Id</dt><dd>${r.recurring_run_id}</dd>
      <dt>Mode</dt><dd>${r.mode}</dd>
      <dt>Trigger</dt><dd><code>${show(r.trigger)}</code></dd>
      <dt>Created</dt><dd>${formatTime(r.created_at)}</dd>
      <dt>Parameters</dt><dd><code>${show(r.runtime_config?.parameters || {})}</code></dd>
    </dl>`}
    <p><a href=${href.recurringRuns()}>All recurring runs</a></p>
  <//>`;
}

function NotFound({ path }) {
  return html`<${Page} name="not-found" title="Page not found">
    <${ApiErrorBox} error=${{ message: `No page at ${path}` }} />
    <p><a href=${href.pipelines()}>Pipelines</a></p>
  <//>`;
}

function CurrentPage({ route }) {
  const [a, b] = route.params;
  switch (route.name) {
    case 'pipelines':
      return html`<${PipelinesPage} />`;
    case 'pipeline-details':
      return html`<${PipelineDetailsPage} key=${a} id=${a} versionId=${b} />`;
    case 'experiments':
      return html`<${ExperimentsPage} />`;
    case 'experiment-details':
      return html`<${ExperimentDetailsPage} key=${a} id=${a} />`;
    case 'runs':
      return html`<${RunsPage} />`;
    case 'run-details':
      return html`<${RunDetailsPage} key=${a} id=${a} query=${route.query} />`;
    case 'recurring-runs':
      return html`<${RecurringRunsPage} />`;
    case 'recurring-run-details':
      return html`<${RecurringRunDetailsPage} key=${a} id=${a} />`;
    case 'home':
      return null;
    default:
      return html`<${NotFound} path=${a} />`;
  }
}

function App() {
  const route = useRoute();
  useEffect(() => {
    if (route.name === 'home') window.location.replace(href.pipelines()); // KFP's default route
  }, [route.name]);
  return html`
    <div class="shell">
      <nav class="sidebar">
        <div class="brand">Kubeflow Pipelines<span>local · kfadapter</span></div>
        ${NAV.map(([label, link, names]) => html`<a class=${names.includes(route.name) ? 'active' : ''} href=${link}>${label}</a>`)}
        <div class="sidebar-foot"><a href="apis/v2beta1/healthz" target="_blank" rel="noopener">API healthz</a></div>
      </nav>
      <main class="content"><${CurrentPage} route=${route} /></main>
    </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
