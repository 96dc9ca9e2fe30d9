import { stringify } from 'yaml';
import type { NormalizedStack } from './types.js';

export type StackFormat = 'yaml' | 'json';

/** The normalised stack as YAML or JSON text (what `tsswarm stack config` prints). */
export function renderStack(stack: NormalizedStack, format: StackFormat): string {
  if (format === 'json') return `${JSON.stringify(stack, null, 2)}\n`;
  return stringify(stack, { lineWidth: 0, aliasDuplicateObjects: false });
}
