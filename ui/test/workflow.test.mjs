// Unit tests of the UI's KFP v1 parts (node --test): a V1 pipeline (Argo Workflow) read for
// its graph and parameters, a V1 run's task_details named as Argo names its nodes, pods named
// as KFP's RetrievePodName (POD_NAMES v2) names them. Fixtures: what the embedded server
// answered for tests/pipelines/v1/*.yaml (GET .../versions/{id}, GET /apis/v2beta1/runs/{id}).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { irOf } from '../src/spec.js';
import {
  dependsTasks,
  isWorkflow,
  resolveWorkflowNodes,
  wiredArguments,
  workflowGraph,
  workflowOf,
  workflowParameters,
  workflowPod,
  workflowTasks,
  workflowTaskStates,
  v1RunBody,
} from '../src/workflow.js';

const fixture = (name) => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url)));
const sampleWf = () => workflowOf(fixture('version-v1-add-subtract-multiply.json').pipeline_spec);

test('a V1 version\'s pipeline_spec is its workflow; a V2 spec is not one', () => {
  const wf = sampleWf();
  assert.ok(isWorkflow(wf));
  assert.equal(workflowOf(JSON.stringify(wf)).spec.entrypoint, 'add-subtract-multiply-v1');
  assert.equal(workflowOf(fixture('run-add-subtract-multiply.json').pipeline_spec), null);
  assert.equal(irOf(wf), null); // the V2 reader does not take it for an IR
  assert.equal(workflowOf('not json'), null);
});

test('the parameters are spec.arguments.parameters, strings, their values the defaults', () => {
  assert.deepEqual(
    workflowParameters(sampleWf()).map((p) => [p.name, p.type, p.defaultValue, p.optional]),
    [['a', 'STRING', '5.0', true], ['b', 'STRING', '3.0', true], ['expected', 'STRING', '16.0', true]],
  );
  const required = workflowParameters({ spec: { arguments: { parameters: [{ name: 'x' }] } } });
  assert.deepEqual([required[0].hasDefault, required[0].optional, required[0].defaultValue], [false, false, undefined]);
  assert.deepEqual(workflowParameters({ spec: {} }), []);
});

test('the graph is the entrypoint DAG\'s tasks with their dependencies', () => {
  const wf = sampleWf();
  const graph = workflowGraph(wf, wf.spec.entrypoint, { exit: true });
  assert.deepEqual(graph.nodes.map((n) => n.id).sort(), ['add', 'check-equals', 'multiply', 'subtract']);
  assert.ok(graph.nodes.every((n) => n.kind === 'container'));
  assert.deepEqual(graph.edges.map((e) => e.join('>')).sort(), ['add>multiply', 'multiply>check-equals', 'subtract>multiply']);
});

test('loops, conditions, depends, steps and the exit handler', () => {
  const loop = workflowOf(fixture('version-v1-loop.json').pipeline_spec);
  const kinds = Object.fromEntries(workflowGraph(loop, loop.spec.entrypoint).nodes.map((n) => [n.id, n.kind]));
  assert.deepEqual(kinds, { 'for-loop-2': 'loop', 'for-loop-3': 'loop', 'make-list': 'container' });
  const cond = workflowOf(fixture('version-v1-condition.json').pipeline_spec);
  const nodes = workflowGraph(cond, cond.spec.entrypoint).nodes;
  assert.ok(nodes.find((n) => n.id === 'condition-1').condition.includes('big'));
  assert.equal(nodes.find((n) => n.id === 'condition-1').kind, 'dag');

  assert.deepEqual(dependsTasks('a && (b.Succeeded || !c.Failed)'), ['a', 'b', 'c']);
  const wf = {
    spec: {
      entrypoint: 'main',
      onExit: 'bye',
      templates: [
        { name: 'main', dag: { tasks: [{ name: 'a', template: 'c' }, { name: 'b', template: 'c', depends: 'a.Succeeded || a.Failed' }] } },
        { name: 's', steps: [[{ name: 'one', template: 'c' }, { name: 'two', template: 'c' }], [{ name: 'three', template: 'c' }]] },
        { name: 'c', container: { image: 'x' } },
        { name: 'bye', container: { image: 'x' } },
      ],
    },
  };
  const g = workflowGraph(wf, 'main', { exit: true });
  assert.deepEqual(g.edges, [['a', 'b']]);
  assert.deepEqual(g.nodes.find((n) => n.id === 'bye'), { id: 'bye', label: 'bye', kind: 'container', component: 'bye', condition: '', exit: true });
  assert.deepEqual(workflowGraph(wf, 's').edges, [['one', 'three'], ['two', 'three']]);
  assert.deepEqual(workflowTasks(wf, 's').map((t) => t.group), [0, 0, 1]);
});

test('a V1 run\'s task details get their Argo node names, states and pods', () => {
  const wf = sampleWf();
  const run = fixture('run-v1-add-subtract-multiply.json');
  const details = run.run_details.task_details;
  const nodes = resolveWorkflowNodes(details);
  assert.equal(nodes.workflow, 'add-subtract-multiply-v1-p5772');
  assert.equal(nodes.byName.size, details.length);
  for (const [name, detail] of nodes.byName) assert.equal(detail.node_id, nodes.id(name));
  const states = workflowTaskStates(nodes, wf, nodes.workflow, wf.spec.entrypoint, { exit: true });
  assert.deepEqual([...states.keys()].sort(), ['add', 'check-equals', 'multiply', 'subtract']);
  for (const state of states.values()) assert.equal(state.state, 'SUCCEEDED');
  // The values kfadapter/localkfp/workflows/nodes.py pod_name gives (the server's log files).
  assert.equal(states.get('add').podName, 'add-subtract-multiply-v1-p5772-add-3730654369');
  assert.equal(states.get('multiply').podName, 'add-subtract-multiply-v1-p5772-multiply-4131939322');
  assert.equal(workflowPod('wf', 'wf', 'main'), 'wf');
  // The entrypoint's inputs are the run's values.
  const add = workflowTasks(wf, wf.spec.entrypoint).find((t) => t.key === 'add');
  assert.deepEqual(wiredArguments(add, run.runtime_config.parameters, true), [
    { name: 'a', source: '7' },
    { name: 'b', source: '2' },
  ]);
  // Upstream outputs as the extension recorded them (GET /apis/local/v1/runs/{id}/tasks).
  const multiply = workflowTasks(wf, wf.spec.entrypoint).find((t) => t.key === 'multiply');
  const outputs = { add: { 'add-Output': '9.0' } };
  assert.deepEqual(
    wiredArguments(multiply, {}, true, (task, name) => outputs[task]?.[name]).map((r) => r.source),
    ['9.0', '{{tasks.subtract.outputs.parameters.subtract-Output}}'],
  );
});

test('a failed V1 run shows its failed task; loops give their items with their pods', () => {
  const wf = sampleWf();
  const failed = resolveWorkflowNodes(fixture('run-v1-failed.json').run_details.task_details);
  const states = workflowTaskStates(failed, wf, failed.workflow, wf.spec.entrypoint);
  assert.equal(states.get('check-equals').state, 'FAILED');
  assert.equal(states.get('multiply').state, 'SUCCEEDED');

  const loop = workflowOf(fixture('version-v1-loop.json').pipeline_spec);
  const run = fixture('run-v1-loop.json');
  const nodes = resolveWorkflowNodes(run.run_details.task_details);
  assert.equal(nodes.byName.size, run.run_details.task_details.length);
  const root = workflowTaskStates(nodes, loop, nodes.workflow, loop.spec.entrypoint);
  const items = root.get('for-loop-3').items;
  assert.deepEqual(items.map((it) => [it.index, it.state]), [[0, 'SUCCEEDED'], [1, 'SUCCEEDED'], [2, 'SUCCEEDED']]);
  assert.equal(items[1].podName, null); // a DAG per item: its task is the pod
  const inner = workflowTaskStates(nodes, loop, items[1].name, 'for-loop-3');
  assert.equal(inner.get('square').podName, 'loop-v1-92qzv-square-1392226689');
});

test('a V1 run before its first node resolves to nothing', () => {
  assert.equal(resolveWorkflowNodes([]), null);
  assert.equal(workflowTaskStates(null, sampleWf(), 'x', 'y').size, 0);
});

test('the run form starts a V1 run the v1beta1 way: values as strings, version and experiment referenced', () => {
  assert.deepEqual(v1RunBody('r', { a: '7', b: 2 }, { pipeline_version_id: 'v1' }, 'e1'), {
    name: 'r',
    pipeline_spec: { parameters: [{ name: 'a', value: '7' }, { name: 'b', value: '2' }] },
    resource_references: [
      { key: { type: 'EXPERIMENT', id: 'e1' }, relationship: 'OWNER' },
      { key: { type: 'PIPELINE_VERSION', id: 'v1' }, relationship: 'CREATOR' },
    ],
  });
  assert.equal(v1RunBody('r', {}, { pipeline_version_id: 'v1' }, '').resource_references.length, 1);
});
