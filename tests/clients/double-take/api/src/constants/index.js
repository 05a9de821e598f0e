// Double Take's configuration as its DeepStack detector reads it, from the environment
// the test sets (Double Take reads the same keys from its config.yml).
module.exports = () => ({
  DETECTORS: {
    DEEPSTACK: {
      URL: process.env.DEEPSTACK_URL,
      KEY: process.env.DEEPSTACK_KEY,
      TIMEOUT: 60,
    },
  },
});
