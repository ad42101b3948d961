// Metrics as kfp.dsl.Metrics and ClassificationMetrics write them into artifact metadata.
import { html } from 'htm/preact';

/** Output[Metrics] scalars: metadata {name: number}. */
export function MetricsTable({ artifacts }) {
  const rows = [];
  for (const art of artifacts) {
    for (const [name, value] of Object.entries(art.metadata || {})) {
      if (name === 'display_name') continue;
      rows.push({ task: art.task, artifact: art.name, name, value });
    }
  }
  if (!rows.length) return null;
  return html`
    <table class="table" data-testid="metrics-table">
      <thead><tr><th>task</th><th>artifact</th><th>metric</th><th>value</th></tr></thead>
      <tbody>
        ${rows.map((r) => html`<tr data-metric=${r.name}><td>${r.task}</td><td>${r.artifact}</td><td>${r.name}</td><td class="num">${formatValue(r.value)}</td></tr>`)}
      </tbody>
    </table>`;
}

function formatValue(value) {
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, '');
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** ClassificationMetrics' confusion matrix: metadata.confusionMatrix {annotationSpecs, rows}. */
export function ConfusionMatrix({ matrix }) {
  const labels = (matrix?.annotationSpecs || []).map((s) => s.displayName);
  const rows = (matrix?.rows || []).map((r) => r.row || []);
  if (!labels.length || !rows.length) return null;
  const max = Math.max(1, ...rows.flat());
  return html`
    <table class="confusion" data-testid="confusion-matrix">
      <caption>Confusion matrix (rows: true label, columns: predicted)</caption>
      <thead><tr><th></th>${labels.map((l) => html`<th>${l}</th>`)}</tr></thead>
      <tbody>
        ${rows.map(
          (row, i) => html`<tr><th>${labels[i]}</th>${row.map((v) => {
            const alpha = 0.08 + 0.85 * (v / max);
            return html`<td style=${`background: rgba(37, 99, 235, ${alpha.toFixed(3)}); color: ${alpha > 0.5 ? '#fff' : '#111'}`}>${v}</td>`;
          })}</tr>`,
        )}
      </tbody>
    </table>`;
}

/** ClassificationMetrics' ROC curve: metadata.confidenceMetrics [{falsePositiveRate, recall, confidenceThreshold}]. */
export function RocCurve({ points }) {
  const data = (points || [])
    .map((p) => ({ x: Number(p.falsePositiveRate ?? 0), y: Number(p.recall ?? 0), t: p.confidenceThreshold }))
    .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
    .sort((a, b) => a.x - b.x || a.y - b.y);
  if (!data.length) return null;
  const size = 220;
  const pad = 34;
  const sx = (x) => pad + x * size;
  const sy = (y) => pad + (1 - y) * size;
  const path = data.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return html`
    <figure class="roc" data-testid="roc-curve">
      <svg width=${size + pad * 2} height=${size + pad * 2} role="img" aria-label="ROC curve">
        <rect x=${pad} y=${pad} width=${size} height=${size} class="plot-frame" />
        ${ticks.map((t) => html`
          <line x1=${sx(t)} y1=${sy(0)} x2=${sx(t)} y2=${sy(1)} class="grid" />
          <line x1=${sx(0)} y1=${sy(t)} x2=${sx(1)} y2=${sy(t)} class="grid" />
          <text x=${sx(t)} y=${sy(0) + 14} text-anchor="middle" class="tick">${t}</text>
          <text x=${sx(0) - 6} y=${sy(t) + 4} text-anchor="end" class="tick">${t}</text>`)}
        <line x1=${sx(0)} y1=${sy(0)} x2=${sx(1)} y2=${sy(1)} class="diagonal" />
        <path d=${path} class="curve" />
        ${data.map((p) => html`<circle cx=${sx(p.x)} cy=${sy(p.y)} r="3" class="point"><title>threshold ${p.t}: FPR ${p.x}, TPR ${p.y}</title></circle>`)}
        <text x=${pad + size / 2} y=${size + pad * 2 - 4} text-anchor="middle" class="axis">false positive rate</text>
        <text x="10" y=${pad + size / 2} transform=${`rotate(-90 10 ${pad + size / 2})`} text-anchor="middle" class="axis">true positive rate</text>
      </svg>
      <figcaption>ROC curve</figcaption>
    </figure>`;
}
