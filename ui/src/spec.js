// Reading a compiled KFP v2 pipeline spec (IR): parameters, DAG tasks and dependencies.

/** The IR document of a stored pipeline_spec ({pipeline_spec, platform_spec} or the IR). */
export function irOf(stored) {
  if (!stored || typeof stored !== 'object') return null;
  if (stored.root || stored.components) return stored;
  if (stored.pipeline_spec) return irOf(stored.pipeline_spec);
  return null;
}

/** The pipeline's input parameters: [{name, type, defaultValue, optional, description}]. */
export function parametersOf(ir) {
  const params = ir?.root?.inputDefinitions?.parameters || {};
  return Object.entries(params).map(([name, p]) => ({
    name,
    type: p.parameterType || p.type || 'STRING',
    defaultValue: p.defaultValue,
    hasDefault: Object.prototype.hasOwnProperty.call(p, 'defaultValue'),
    optional: Boolean(p.isOptional) || Object.prototype.hasOwnProperty.call(p, 'defaultValue'),
    description: p.description || '',
  }));
}

export function componentOf(ir, task) {
  return ir?.components?.[task?.componentRef?.name] || {};
}

/** What a task of a DAG is: a loop, a sub-DAG, an importer or a container task. */
export function taskKind(ir, task) {
  if (task.parameterIterator || task.artifactIterator) return 'loop';
  const component = componentOf(ir, task);
  if (component.dag) return 'dag';
  const executor = ir?.deploymentSpec?.executors?.[component.executorLabel];
  if (executor?.importer) return 'importer';
  return 'container';
}

/** The tasks of a DAG component and their dependencies, as graph nodes and edges. */
export function dagGraph(ir, component) {
  const tasks = component?.dag?.tasks || {};
  const nodes = Object.entries(tasks).map(([key, task]) => ({
    id: key,
    label: task.taskInfo?.name || key,
    kind: taskKind(ir, task),
    component: (task.componentRef?.name || '').replace(/^comp-/, ''),
    condition: task.triggerPolicy?.condition || '',
    exit: task.triggerPolicy?.strategy === 'ALL_UPSTREAM_TASKS_COMPLETED',
  }));
  const edges = [];
  for (const [key, task] of Object.entries(tasks)) {
    for (const upstream of task.dependentTasks || []) {
      if (tasks[upstream]) edges.push([upstream, key]);
    }
  }
  return { nodes, edges };
}

/** A task's inputs as the spec wires them: [{name, source}] (run values filled in). */
export function wiredInputs(task, runParameters = {}) {
  const out = [];
  for (const [name, input] of Object.entries(task?.inputs?.parameters || {})) {
    let source = '';
    if (input.runtimeValue) source = JSON.stringify(input.runtimeValue.constant);
    else if (input.componentInputParameter) {
      const param = input.componentInputParameter;
      source = param in runParameters ? `${JSON.stringify(runParameters[param])} (pipeline input ${param})` : `pipeline input ${param}`;
    } else if (input.taskOutputParameter) {
      const t = input.taskOutputParameter;
      source = `output ${t.outputParameterKey} of ${t.producerTask}`;
    } else source = JSON.stringify(input);
    out.push({ name, source });
  }
  for (const [name, input] of Object.entries(task?.inputs?.artifacts || {})) {
    const t = input.taskOutputArtifact;
    out.push({ name, source: t ? `artifact ${t.outputArtifactKey} of ${t.producerTask}` : 'artifact' });
  }
  return out;
}

/** A form value turned into the parameter's JSON value (throws on a bad value). */
export function convertParameter(param, text) {
  switch (param.type) {
    case 'NUMBER_INTEGER': {
      if (!/^[-+]?\d+$/.test(text.trim())) throw new Error(`${param.name} must be an integer`);
      return Number.parseInt(text, 10);
    }
    case 'NUMBER_DOUBLE': {
      const value = Number(text);
      if (text.trim() === '' || Number.isNaN(value)) throw new Error(`${param.name} must be a number`);
      return value;
    }
    case 'BOOLEAN':
      return text === 'true';
    case 'LIST':
    case 'STRUCT': {
      try {
        return JSON.parse(text);
      } catch (_) {
        throw new Error(`${param.name} must be JSON (${param.type === 'LIST' ? 'a list' : 'an object'})`);
      }
    }
    default:
      return text;
  }
}

/** A parameter value shown in a form field. */
export function formText(param, value) {
  if (value === undefined || value === null) return param.type === 'BOOLEAN' ? 'false' : '';
  if (param.type === 'LIST' || param.type === 'STRUCT') return JSON.stringify(value);
  return String(value);
}
