/**
 * The platform arguments a Dockerfile may use without passing them (BuildKit's automatic
 * platform ARGs): BUILDPLATFORM/OS/ARCH/VARIANT for the machine that builds, TARGETPLATFORM/…
 * for the platform built for. Both are this machine's: tsswarm builds for the host only, and
 * `FROM --platform` chooses the platform of a base image.
 */
import type { Platform } from '../images/oci.js';

/** `os/arch[/variant]`. */
export function platformText(p: Platform): string {
  return `${p.os ?? ''}/${p.architecture ?? ''}${p.variant ? `/${p.variant}` : ''}`;
}

/** The automatic platform ARGs, by name. */
export function platformArgs(build: Platform, target: Platform): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [prefix, p] of [
    ['BUILD', build],
    ['TARGET', target],
  ] as const) {
    out[`${prefix}PLATFORM`] = platformText(p);
    out[`${prefix}OS`] = p.os ?? '';
    out[`${prefix}ARCH`] = p.architecture ?? '';
    out[`${prefix}VARIANT`] = p.variant ?? '';
  }
  return out;
}

/** Whether an image's platform is the one asked for (a variant only when both name one). */
export function samePlatform(image: Platform, wanted: Platform): boolean {
  return (
    image.os === wanted.os &&
    image.architecture === wanted.architecture &&
    (wanted.variant === undefined || image.variant === undefined || image.variant === wanted.variant)
  );
}
