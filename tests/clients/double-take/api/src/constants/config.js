// Double Take's defaults for detect.match and detect.unknown (its config.yml's defaults).
module.exports.detect = () => ({
  MATCH: { CONFIDENCE: 60, MIN_AREA: 10000, SAVE: true, BASE64: false, PURGE: 168 },
  UNKNOWN: { CONFIDENCE: 40, MIN_AREA: 0, SAVE: true, BASE64: false, PURGE: 8 },
});
