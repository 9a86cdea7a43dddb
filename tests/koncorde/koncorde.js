// Runs npm's koncorde (4.x) for the differential test and the benchmark.
// Reads one JSON object on stdin, writes one JSON object on stdout.
//   match: {filters: [...], documents: [{body, id}]} -> {ids: [id | {error}], matches: [[i, ...]]}
//   bench: {filters: [...], documents: [...], seconds} -> {registered, documents, rate, check}
'use strict';

const { Koncorde } = require('koncorde');

function readStdin() {
  return new Promise((resolve) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
  });
}

function match(input) {
  const koncorde = new Koncorde({ maxConditions: 1000 });
  const ids = [];
  const byId = new Map();
  input.filters.forEach((filter, i) => {
    try {
      const id = koncorde.register(filter);
      ids.push(id);
      if (!byId.has(id)) byId.set(id, []);
      byId.get(id).push(i);
    } catch (error) {
      ids.push({ error: error.message, path: error.path || null });
    }
  });
  const matches = input.documents.map((doc) => {
    const data = doc.id === undefined || doc.id === null ? doc.body : { ...doc.body, _id: doc.id };
    const found = [];
    for (const id of koncorde.test(data)) found.push(...byId.get(id));
    return found.sort((a, b) => a - b);
  });
  return { ids, matches };
}

function bench(input) {
  const koncorde = new Koncorde({ maxConditions: 1000 });
  input.filters.forEach((filter) => koncorde.register(filter));
  const docs = input.documents;
  let done = 0;
  let matched = 0;
  let check = 0; // matches over one pass on the documents, to compare with the other engine
  for (let i = 0; i < docs.length; i++) check += koncorde.test(docs[i]).length;
  // warm up the JIT, then measure
  for (let i = 0; i < Math.min(docs.length, 2000); i++) matched += koncorde.test(docs[i]).length;
  // CPU time of this process (user + system) by default: the machine may be shared
  const cpu = input.clock === 'wall'
    ? () => Number(process.hrtime.bigint()) / 1e9
    : () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  const start = cpu();
  while (cpu() - start < input.seconds) {
    for (let i = 0; i < 256; i++) {
      matched += koncorde.test(docs[done % docs.length]).length;
      done++;
    }
  }
  const elapsed = cpu() - start;
  return {
    registered: koncorde.getFilterIds().length, documents: done, rate: done / elapsed, check,
    matched,
  };
}

readStdin().then((input) => {
  const mode = process.argv[2];
  const out = mode === 'bench' ? bench(input) : match(input);
  process.stdout.write(JSON.stringify(out));
});
