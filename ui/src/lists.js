// The list pages: pipelines, experiments (and one experiment's runs), runs, recurring runs.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, enc, filter, query, V2 } from './api.js';
import { ApiErrorBox, duration, formatTime, Loading, Page, StateBadge, useLoad, usePagedList, usePoll } from './common.js';
import { href } from './route.js';
import { irOf } from './spec.js';

const PAGE = 50;

function More({ list }) {
  if (list.loading) return html`<${Loading} />`;
  return list.hasMore ? html`<button class="button" onClick=${list.more}>Load more</button>` : null;
}

function Empty({ list, what }) {
  return !list.loading && !list.error && !list.items.length ? html`<p class="muted" data-testid="empty-list">No ${what} yet.</p>` : null;
}

export function PipelinesPage() {
  const list = usePagedList(
    (token) => api(`${V2}/pipelines${query({ page_size: PAGE, page_token: token, sort_by: token ? '' : 'created_at desc' })}`),
    'pipelines',
    [],
  );
  return html`
    <${Page} name="pipelines" title="Pipelines">
      <${ApiErrorBox} error=${list.error} />
      <table class="table">
        <thead><tr><th>Pipeline</th><th>Description</th><th>Created</th></tr></thead>
        <tbody>
          ${list.items.map(
            (p) => html`<tr data-testid="pipeline-row" data-pipeline-id=${p.pipeline_id}>
              <td><a href=${href.pipeline(p.pipeline_id)}>${p.display_name || p.name || p.pipeline_id}</a></td>
              <td class="muted">${p.description || ''}</td>
              <td>${formatTime(p.created_at)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      <${Empty} list=${list} what="pipelines" />
      <${More} list=${list} />
    <//>`;
}

export function ExperimentsPage() {
  const [archived, setArchived] = useState(false);
  const list = usePagedList(
    (token) =>
      api(
        `${V2}/experiments${query({
          page_size: PAGE,
          page_token: token,
          sort_by: token ? '' : 'created_at desc',
          filter: token ? '' : filter(['storage_state', archived ? 'EQUALS' : 'NOT_EQUALS', 'ARCHIVED']),
        })}`,
      ),
    'experiments',
    [archived],
  );
  return html`
    <${Page} name="experiments" title="Experiments" actions=${html`<label class="toggle"><input type="checkbox" checked=${archived} onChange=${(e) => setArchived(e.target.checked)} /> archived</label>`}>
      <${ApiErrorBox} error=${list.error} />
      <table class="table">
        <thead><tr><th>Experiment</th><th>Description</th><th>Created</th><th>Last run</th></tr></thead>
        <tbody>
          ${list.items.map(
            (e) => html`<tr data-testid="experiment-row" data-experiment-id=${e.experiment_id}>
              <td><a href=${href.experiment(e.experiment_id)}>${e.display_name || e.experiment_id}</a></td>
              <td class="muted">${e.description || ''}</td>
              <td>${formatTime(e.created_at)}</td>
              <td>${formatTime(e.last_run_created_at)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      <${Empty} list=${list} what="experiments" />
      <${More} list=${list} />
    <//>`;
}

/** Runs, newest first, optionally of one experiment; archived ones on request. */
export function RunTable({ experimentId }) {
  const [archived, setArchived] = useState(false);
  const list = usePagedList(
    (token) =>
      api(
        `${V2}/runs${query({
          page_size: PAGE,
          page_token: token,
          experiment_id: experimentId,
          sort_by: token ? '' : 'created_at desc',
          filter: token ? '' : filter(['storage_state', archived ? 'EQUALS' : 'NOT_EQUALS', 'ARCHIVED']),
        })}`,
      ),
    'runs',
    [experimentId, archived],
  );
  const names = useLoad(
    () => (experimentId ? Promise.resolve(null) : api(`${V2}/experiments${query({ page_size: 200 })}`)),
    [experimentId],
  );
  const anyActive = list.items.some((r) => ['PENDING', 'RUNNING', 'CANCELING', 'PAUSED'].includes(r.state));
  usePoll(list.refresh, 3000, anyActive, [experimentId, archived]);
  const experimentNames = new Map((names.data?.experiments || []).map((e) => [e.experiment_id, e.display_name]));
  return html`
    <div class="run-table">
      <div class="table-tools">
        <label class="toggle"><input type="checkbox" checked=${archived} onChange=${(e) => setArchived(e.target.checked)} /> archived runs</label>
        <button class="button small" onClick=${list.reload}>Refresh</button>
      </div>
      <${ApiErrorBox} error=${list.error} />
      <table class="table">
        <thead><tr><th>Run</th><th>State</th><th>Created</th><th>Duration</th><th>Pipeline</th>${experimentId ? null : html`<th>Experiment</th>`}</tr></thead>
        <tbody>
          ${list.items.map((r) => html`<${RunRow} run=${r} showExperiment=${!experimentId} experimentName=${experimentNames.get(r.experiment_id)} />`)}
        </tbody>
      </table>
      <${Empty} list=${list} what="runs" />
      <${More} list=${list} />
    </div>`;
}

function RunRow({ run, showExperiment, experimentName }) {
  const ref = run.pipeline_version_reference;
  return html`<tr data-testid="run-row" data-run-id=${run.run_id} data-state=${run.state}>
    <td><a href=${href.run(run.run_id)}>${run.display_name || run.run_id}</a></td>
    <td><${StateBadge} state=${run.state} /></td>
    <td>${formatTime(run.created_at)}</td>
    <td>${duration(run.scheduled_at || run.created_at, run.finished_at)}</td>
    <td>${ref?.pipeline_id ? html`<a href=${href.pipeline(ref.pipeline_id, ref.pipeline_version_id)}>pipeline</a>` : html`<span class="muted">${irOf(run.pipeline_spec)?.pipelineInfo?.name || 'inline spec'}</span>`}</td>
    ${showExperiment ? html`<td>${run.experiment_id ? html`<a href=${href.experiment(run.experiment_id)}>${experimentName || run.experiment_id}</a>` : ''}</td>` : null}
  </tr>`;
}

export function RunsPage() {
  return html`<${Page} name="runs" title="Runs"><${RunTable} /><//>`;
}

export function ExperimentDetailsPage({ id }) {
  const experiment = useLoad(() => api(`${V2}/experiments/${enc(id)}`), [id]);
  const e = experiment.data;
  return html`
    <${Page} name="experiment-details" title=${e ? `Experiment ${e.display_name}` : 'Experiment'}>
      <${ApiErrorBox} error=${experiment.error} />
      ${e &&
      html`<dl class="facts">
        <dt>Id</dt><dd>${e.experiment_id}</dd>
        <dt>Description</dt><dd>${e.description || '–'}</dd>
        <dt>Created</dt><dd>${formatTime(e.created_at)}</dd>
        <dt>Storage</dt><dd>${e.storage_state || 'AVAILABLE'}</dd>
      </dl>`}
      <h2>Runs</h2>
      <${RunTable} experimentId=${id} />
    <//>`;
}

function trigger(rr) {
  const t = rr.trigger || {};
  if (t.cron_schedule) return `cron ${t.cron_schedule.cron}`;
  if (t.periodic_schedule) return `every ${t.periodic_schedule.interval_second} s`;
  return '–';
}

export function RecurringRunsPage() {
  const [busy, setBusy] = useState(null);
  const [actionError, setActionError] = useState(null);
  const list = usePagedList(
    (token) => api(`${V2}/recurringruns${query({ page_size: PAGE, page_token: token, sort_by: token ? '' : 'created_at desc' })}`),
    'recurringRuns',
    [],
  );
  const toggle = async (rr) => {
    setBusy(rr.recurring_run_id);
    setActionError(null);
    try {
      const enabled = rr.mode === 'ENABLE';
      await api(`${V2}/recurringruns/${enc(rr.recurring_run_id)}:${enabled ? 'disable' : 'enable'}`, { method: 'POST' });
      list.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };
  return html`
    <${Page} name="recurring-runs" title="Recurring runs">
      <${ApiErrorBox} error=${list.error || actionError} />
      <table class="table">
        <thead><tr><th>Recurring run</th><th>Trigger</th><th>Status</th><th>Max concurrency</th><th>Created</th><th></th></tr></thead>
        <tbody>
          ${list.items.map((rr) => {
            const enabled = rr.mode === 'ENABLE';
            return html`<tr data-testid="recurring-run-row" data-recurring-run-id=${rr.recurring_run_id} data-mode=${enabled ? 'ENABLE' : 'DISABLE'}>
              <td>${rr.display_name || rr.recurring_run_id}</td>
              <td><code>${trigger(rr)}</code></td>
              <td><span class=${`badge ${enabled ? 'state-SUCCEEDED' : 'state-PENDING'}`} data-testid="recurring-run-status">${enabled ? 'Enabled' : 'Disabled'}</span></td>
              <td>${rr.max_concurrency || ''}</td>
              <td>${formatTime(rr.created_at)}</td>
              <td><button class="button small" data-testid="toggle-recurring-run" disabled=${busy === rr.recurring_run_id} onClick=${() => toggle(rr)}>${enabled ? 'Disable' : 'Enable'}</button></td>
            </tr>`;
          })}
        </tbody>
      </table>
      <${Empty} list=${list} what="recurring runs" />
      <${More} list=${list} />
    <//>`;
}
