// Shared pieces of the pages: loading data, errors, states, times.
import { html } from 'htm/preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export const FINAL_STATES = new Set(['SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELED']);

/** Loads `load()` (again whenever `deps` change); {data, error, loading, reload}. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const counter = useRef(0);
  const reload = useCallback(() => {
    const mine = ++counter.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === counter.current && setState({ data, error: null, loading: false }),
      (error) => mine === counter.current && setState({ data: null, error, loading: false }),
    );
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...state, reload };
}

/** Calls `tick()` every `ms` while `active`, stopping on unmount. */
export function usePoll(tick, ms, active, deps) {
  useEffect(() => {
    if (!active) return undefined;
    let stopped = false;
    let timer;
    const loop = async () => {
      if (stopped) return;
      try {
        await tick();
      } finally {
        if (!stopped) timer = setTimeout(loop, ms);
      }
    };
    timer = setTimeout(loop, ms);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [active, ...deps]);
}

export function ApiErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="api-error" role="alert" data-testid="api-error">${error.message || String(error)}</div>`;
}

export function Loading() {
  return html`<p class="muted" data-testid="loading">Loading…</p>`;
}

export function StateBadge({ state, testid }) {
  const value = state || 'UNKNOWN';
  return html`<span class=${`badge state-${value}`} data-testid=${testid}>${value}</span>`;
}

const UNSET = new Set(['1970-01-01T00:00:00Z', '0001-01-01T00:00:00Z']);

export function formatTime(value) {
  if (!value || UNSET.has(value)) return '–';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString();
}

export function duration(start, end) {
  if (!start || UNSET.has(start)) return '–';
  const from = new Date(start).getTime();
  const to = !end || UNSET.has(end) ? Date.now() : new Date(end).getTime();
  const seconds = Math.max(0, Math.round((to - from) / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h ? `${h}h ${m}m ${s}s` : m ? `${m}m ${s}s` : `${s}s`;
}

export function Page({ name, title, actions, children }) {
  useEffect(() => {
    document.title = `${title} · Kubeflow Pipelines (local)`;
  }, [title]);
  return html`
    <section class="page" data-testid=${`page-${name}`}>
      <header class="page-header">
        <h1>${title}</h1>
        <div class="actions">${actions}</div>
      </header>
      ${children}
    </section>`;
}

/** A value shown as text (JSON for non-strings). */
export function show(value) {
  if (value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Pages of a KFP list: {items, more(), hasMore}; `list(token)` returns one page. */
export function usePagedList(list, field, deps) {
  const [items, setItems] = useState([]);
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const gen = useRef(0);
  const pages = useRef(0);
  const fetchPage = useCallback(
    async (pageToken, replace, quiet = false) => {
      const mine = replace ? ++gen.current : gen.current;
      pages.current = replace ? 1 : pages.current + 1;
      if (!quiet) setLoading(true);
      try {
        const page = await list(pageToken);
        if (mine !== gen.current) return;
        setItems((old) => (replace ? page[field] || [] : [...old, ...(page[field] || [])]));
        setToken(page.next_page_token || '');
        setError(null);
      } catch (e) {
        if (mine === gen.current) setError(e);
      } finally {
        if (mine === gen.current) setLoading(false);
      }
    },
    deps,
  );
  useEffect(() => {
    fetchPage('', true);
  }, [fetchPage]);
  return {
    items,
    error,
    loading,
    hasMore: Boolean(token),
    more: () => fetchPage(token, false),
    reload: () => fetchPage('', true),
    /** Fetches the first page again without showing "Loading" (only while one page is shown). */
    refresh: () => (pages.current <= 1 ? fetchPage('', true, true) : Promise.resolve()),
  };
}
