// Double Take's actions module as its DeepStack detector uses it: only `checks`, copied
// from api/src/util/detectors/actions/index.js (MIT, see ../../../../../LICENSE); the rest
// of that module dispatches to every detector and is not needed here.
module.exports.checks = ({ MATCH, UNKNOWN, name, confidence, box }) => {
  const checks = [];
  if (name === 'unknown' && box.width * box.height < UNKNOWN.MIN_AREA) return false;
  if (name === 'unknown' && confidence < UNKNOWN.CONFIDENCE) {
    checks.push(`confidence too low: ${confidence} < ${UNKNOWN.CONFIDENCE}`);
  } else {
    if (confidence < MATCH.CONFIDENCE)
      checks.push(`confidence too low: ${confidence} < ${MATCH.CONFIDENCE}`);
    if (box.width * box.height < MATCH.MIN_AREA)
      checks.push(`box area too low: ${box.width * box.height} < ${MATCH.MIN_AREA}`);
  }
  return checks;
};
