import { readFileSync } from 'node:fs';

/**
 * The version is the package's: read from package.json (one level above src/ and dist/), so a release
 * changes it in one place.
 */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
