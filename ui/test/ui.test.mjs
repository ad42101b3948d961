// Unit tests of the UI's pure parts (node --test): Argo node names, spec reading, routes.
// Fixtures: runs as the embedded server answered GET /apis/v2beta1/runs/{id}.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dagTaskStates, executorPod, fnv32a, resolveNodes } from '../src/argo.js';
import { parseHash } from '../src/route.js';
import { convertParameter, dagGraph, irOf, parametersOf } from '../src/spec.js';

const fixture = (name) => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url)));

test('fnv32a is Argo\'s hash (the values kfadapter/localkfp/argo_names.py gives)', () => {
  assert.equal(fnv32a(''), 2166136261);
  assert.equal(fnv32a('a'), 3826002220);
  assert.equal(fnv32a('add-subtract-multiply-m7k7r.root.add'), 1960817170);
  assert.equal(fnv32a('wf.root.ünïcode'), 4291907004);
});

test('every task detail of a run gets its Argo node name', () => {
  const run = fixture('run-add-subtract-multiply.json');
  const details = run.run_details.task_details;
  const nodes = resolveNodes(details);
  assert.equal(nodes.byName.size, details.length);
  const wf = nodes.workflow;
  for (const [name, detail] of nodes.byName) {
    assert.equal(name.split('.').pop(), detail.display_name.split('.').pop());
    assert.equal(detail.node_id, nodes.id(name));
  }
  const states = dagTaskStates(nodes, `${wf}.root`, irOf(run.pipeline_spec).root.dag.tasks);
  assert.deepEqual([...states.keys()].sort(), ['add', 'check-equals', 'multiply', 'subtract']);
  for (const state of states.values()) assert.equal(state.state, 'SUCCEEDED');
  const add = states.get('add');
  assert.equal(add.podName, executorPod(add.executorId));
  assert.match(add.podName, new RegExp(`^${wf}-system-container-impl-\\d+$`));
});

test('sub-DAGs, conditions, loops and exit tasks are found under their DAG', () => {
  const run = fixture('run-nested-demo.json');
  const ir = irOf(run.pipeline_spec);
  const nodes = resolveNodes(run.run_details.task_details);
  assert.equal(nodes.byName.size, run.run_details.task_details.length);
  const root = dagTaskStates(nodes, `${nodes.workflow}.root`, ir.root.dag.tasks);
  assert.equal(root.get('exit-handler-1').state, 'SUCCEEDED');
  assert.equal(root.get('echo').state, 'SUCCEEDED'); // the exit task, under <host>.onExit
  const handler = ir.components[ir.root.dag.tasks['exit-handler-1'].componentRef.name];
  const inner = dagTaskStates(nodes, root.get('exit-handler-1').node.node_name, handler.dag.tasks);
  const loopKey = Object.keys(handler.dag.tasks).find((k) => k.startsWith('for-loop'));
  assert.deepEqual(inner.get(loopKey).iterations.map((it) => it.index), [0, 1, 2]);
  const skipped = [...inner.entries()].filter(([, s]) => s.state === 'SKIPPED').map(([k]) => k);
  assert.equal(skipped.length, 1); // the branch not taken
});

test('no task details (a run not started) resolve to nothing', () => {
  assert.equal(resolveNodes([]), null);
  assert.equal(resolveNodes(undefined), null);
  assert.equal(dagTaskStates(null, 'x', { a: {} }).size, 0);
});

test('parameters and the DAG are read from the spec', () => {
  const ir = irOf(fixture('run-add-subtract-multiply.json').pipeline_spec);
  assert.deepEqual(
    parametersOf(ir).map((p) => [p.name, p.type, p.defaultValue]).sort(),
    [['a', 'NUMBER_DOUBLE', 5], ['b', 'NUMBER_DOUBLE', 3], ['expected', 'NUMBER_DOUBLE', 16]],
  );
  const graph = dagGraph(ir, ir.root);
  assert.deepEqual(graph.nodes.map((n) => n.id).sort(), ['add', 'check-equals', 'multiply', 'subtract']);
  assert.deepEqual(graph.edges.map((e) => e.join('>')).sort(), ['add>multiply', 'multiply>check-equals', 'subtract>multiply']);
  assert.equal(irOf({ pipeline_spec: ir, platform_spec: {} }), ir);
});

test('form values are converted to the parameter types', () => {
  assert.equal(convertParameter({ name: 'n', type: 'NUMBER_INTEGER' }, '42'), 42);
  assert.throws(() => convertParameter({ name: 'n', type: 'NUMBER_INTEGER' }, '4.2'), /integer/);
  assert.equal(convertParameter({ name: 'x', type: 'NUMBER_DOUBLE' }, '1.5'), 1.5);
  assert.throws(() => convertParameter({ name: 'x', type: 'NUMBER_DOUBLE' }, 'abc'), /number/);
  assert.equal(convertParameter({ name: 'b', type: 'BOOLEAN' }, 'true'), true);
  assert.deepEqual(convertParameter({ name: 'l', type: 'LIST' }, '[1, 2]'), [1, 2]);
  assert.throws(() => convertParameter({ name: 's', type: 'STRUCT' }, '{'), /JSON/);
  assert.equal(convertParameter({ name: 's', type: 'STRING' }, ' a '), ' a ');
});

test('hash routes are KFP UI\'s', () => {
  assert.deepEqual(parseHash('#/runs/details/abc').params, ['abc']);
  assert.equal(parseHash('#/runs/details/abc').name, 'run-details');
  assert.deepEqual(parseHash('#/pipelines/details/p1/version/v1').params, ['p1', 'v1']);
  assert.deepEqual(parseHash('#/pipelines/details/p1').params, ['p1', undefined]);
  assert.equal(parseHash('#/experiments/details/e%2F1').params[0], 'e/1');
  assert.equal(parseHash('#/recurringruns').name, 'recurring-runs');
  assert.equal(parseHash('#/runs/details/r1?task=add').query.get('task'), 'add');
  assert.equal(parseHash('').name, 'home');
  assert.equal(parseHash('#/nope').name, 'not-found');
});
