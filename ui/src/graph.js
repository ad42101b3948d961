// A DAG drawn as SVG: layout by dagre (@dagrejs/dagre), nodes and edges rendered here.
import dagre from '@dagrejs/dagre';
import { html } from 'htm/preact';
import { useMemo } from 'preact/hooks';

const NODE_WIDTH = 190;
const NODE_HEIGHT = 46;

function layout(nodes, edges) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'TB', nodesep: 28, ranksep: 44, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of nodes) g.setNode(node.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const [from, to] of edges) g.setEdge(from, to);
  dagre.layout(g);
  const positions = new Map(nodes.map((n) => [n.id, g.node(n.id)]));
  const lines = g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points }));
  const { width, height } = g.graph();
  return { positions, lines, width: width || NODE_WIDTH, height: height || NODE_HEIGHT };
}

function edgePath(points) {
  if (!points?.length) return '';
  const [first, ...rest] = points;
  return `M${first.x},${first.y} ` + rest.map((p) => `L${p.x},${p.y}`).join(' ');
}

const KIND_LABEL = { dag: 'sub-DAG', loop: 'ParallelFor', importer: 'importer', container: '' };

/**
 * nodes: [{id, label, kind, state?, cached?}], edges: [[from, to]].
 * States colour the nodes; without states (a pipeline's graph) they are neutral.
 */
export function Graph({ nodes, edges, selected, onSelect, showStates }) {
  const structure = JSON.stringify([nodes.map((n) => n.id), edges]);
  const { positions, lines, width, height } = useMemo(() => layout(nodes, edges), [structure]);
  if (!nodes.length) return html`<p class="muted">This DAG has no tasks.</p>`;
  return html`
    <div class="graph" data-testid="graph">
      <svg width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`} role="img" aria-label="pipeline graph">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="arrow-head" />
          </marker>
        </defs>
        ${lines.map((line) => html`<path class="edge" d=${edgePath(line.points)} marker-end="url(#arrow)" />`)}
        ${nodes.map((node) => {
          const p = positions.get(node.id);
          if (!p) return null;
          const state = showStates ? node.state || 'PENDING' : undefined;
          const classes = ['node', `kind-${node.kind}`, state ? `state-${state}` : 'state-none', selected === node.id ? 'selected' : ''];
          const sub = showStates
            ? `${(state || '').toLowerCase().replace('_', ' ')}${node.cached ? ' (cached)' : ''}`
            : [KIND_LABEL[node.kind] || (node.component !== node.label ? node.component : ''), node.condition ? 'if …' : '', node.exit ? 'exit task' : ''].filter(Boolean).join(' · ');
          return html`
            <g
              class=${classes.join(' ')}
              data-testid="graph-node"
              data-task=${node.id}
              data-state=${state}
              transform=${`translate(${p.x - NODE_WIDTH / 2},${p.y - NODE_HEIGHT / 2})`}
              onClick=${() => onSelect && onSelect(node.id)}
              tabindex="0"
              onKeyDown=${(e) => e.key === 'Enter' && onSelect && onSelect(node.id)}
            >
              <title>${node.label}${state ? ` — ${state}` : ''}</title>
              <rect width=${NODE_WIDTH} height=${NODE_HEIGHT} rx="6" />
              <rect class="state-bar" width="6" height=${NODE_HEIGHT} rx="3" />
              <text x="14" y=${sub ? 19 : 28} class="node-label">${truncate(node.label, 24)}</text>
              ${sub ? html`<text x="14" y="36" class="node-sub">${sub}</text>` : null}
            </g>`;
        })}
      </svg>
    </div>`;
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
