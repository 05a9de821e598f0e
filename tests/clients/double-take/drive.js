// Calls Double Take 1.13.1's DeepStack detector module (api/src/util/detectors/deepstack.js,
// unmodified) the way Double Take does: node drive.js train NAME FILE | recognize FILE |
// remove NAME. Prints the server's status and answer (and, for recognize, Double Take's
// normalised result) as one JSON line.
const deepstack = require('./api/src/util/detectors/deepstack');

(async () => {
  const [command, ...args] = process.argv.slice(2);
  let res;
  if (command === 'train') res = await deepstack.train({ name: args[0], key: args[1] });
  else if (command === 'recognize') res = await deepstack.recognize({ key: args[0] });
  else if (command === 'remove') res = await deepstack.remove({ name: args[0] });
  const out = { status: res.status, data: res.data };
  if (command === 'recognize') out.normalized = deepstack.normalize({ camera: 'front', data: res.data });
  console.log(JSON.stringify(out));
})().catch((e) => {
  const res = e.response || {};
  console.log(JSON.stringify({ error: String(e), status: res.status, data: res.data }));
});
