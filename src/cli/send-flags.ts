/**
 * The V8 flags the send command changes as it runs (commands/send.ts, which says why and to what), by name.
 * The build puts V8's defaults of these back before it writes the send's code cache (scripts/bundle-cli.mjs
 * reads this list from dist/): a cache written under other flags carries another flag hash, and V8 would
 * refuse it at every start. One list, so that a flag the send starts to change cannot be missed there.
 */
export const SEND_RUNTIME_FLAGS = {
  interruptBudget: 'interrupt-budget',
  semiSpaceGrowth: 'semi-space-growth-factor',
} as const;
