/** Where a daemon keeps images, containers and state unless `--data-root` says otherwise. */
export const DEFAULT_DATA_ROOT = '/var/lib/tsswarm';
