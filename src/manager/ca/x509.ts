/**
 * The one place that loads @peculiar/x509. Its dependency injection (tsyringe) needs a Reflect
 * metadata polyfill installed before the library is evaluated; ESM evaluates imports in order,
 * so `reflect-metadata` comes first here and every other file imports x509 from this module.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle;
/** The only key type of the cluster: ECDSA on P-256, signatures with SHA-256. */
export const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
