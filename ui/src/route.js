// Hash routes as KFP's UI has them (frontend/src/components/Router.tsx, RoutePage).
import { useEffect, useState } from 'preact/hooks';

const ROUTES = [
  ['pipelines', /^\/pipelines$/],
  ['pipeline-details', /^\/pipelines\/details\/([^/]+)(?:\/version\/([^/]+))?$/],
  ['experiments', /^\/experiments$/],
  ['experiment-details', /^\/experiments\/details\/([^/]+)$/],
  ['runs', /^\/runs$/],
  ['run-details', /^\/runs\/details\/([^/]+)$/],
  ['recurring-runs', /^\/recurringruns$/],
  ['recurring-run-details', /^\/recurringrun\/details\/([^/]+)$/],
];

/** The page named by a location hash: {name, params, query}. */
export function parseHash(hash) {
  const raw = (hash || '').replace(/^#/, '');
  const [path, search = ''] = raw.split('?');
  const clean = path.replace(/\/+$/, '') || '/';
  if (clean === '/') return { name: 'home', params: [], query: new URLSearchParams(search) };
  for (const [name, pattern] of ROUTES) {
    const match = pattern.exec(clean);
    if (match) {
      const params = match.slice(1).map((p) => (p === undefined ? undefined : safeDecode(p)));
      return { name, params, query: new URLSearchParams(search) };
    }
  }
  return { name: 'not-found', params: [clean], query: new URLSearchParams(search) };
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch (_) {
    return text;
  }
}

/** The current route, updated on hashchange. */
export function useRoute() {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseHash(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}

export const href = {
  pipelines: () => '#/pipelines',
  pipeline: (id, version) =>
    version
      ? `#/pipelines/details/${encodeURIComponent(id)}/version/${encodeURIComponent(version)}`
      : `#/pipelines/details/${encodeURIComponent(id)}`,
  experiments: () => '#/experiments',
  experiment: (id) => `#/experiments/details/${encodeURIComponent(id)}`,
  runs: () => '#/runs',
  run: (id) => `#/runs/details/${encodeURIComponent(id)}`,
  recurringRuns: () => '#/recurringruns',
  recurringRun: (id) => `#/recurringrun/details/${encodeURIComponent(id)}`,
};
