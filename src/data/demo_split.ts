/**
 * The demo's fixed split of the 10,000 MNIST digits: the base was trained on the training part,
 * and every accuracy the demo reports is on the test part.
 *
 * @module
 */

/** Seed and size of the test split. */
export const DEMO_SPLIT = { seed: 7, testRows: 2000 } as const;
