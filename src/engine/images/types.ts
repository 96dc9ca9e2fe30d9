/** Image data shared by the image store, the container engine and the API. */

/** The runtime part of an image config (OCI image config `config`), Docker's field names. */
export interface ImageConfig {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ExposedPorts?: Record<string, object>;
  Healthcheck?: ImageHealthcheck;
  Volumes?: Record<string, object>;
}

/** Durations are nanoseconds, as in Docker's image config. */
export interface ImageHealthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface ImageRecord {
  /** 'sha256:<hex of the config blob>' — the image ID, as Docker computes it. */
  id: string;
  /** Familiar references ('busybox:latest', 'registry:5000/a/b:v1'). */
  repoTags: string[];
  created?: string;
  architecture: string;
  os: string;
  /** Sum of the uncompressed layer (tar stream) sizes, in bytes. */
  size: number;
  /** Layer diff_ids ('sha256:<hex>'), bottom-most first. */
  layers: string[];
  config: ImageConfig;
}

/** A blob as the store keeps it: content-addressed by the sha256 of its bytes as received. */
export interface BlobDescriptor {
  mediaType: string;
  /** 'sha256:<hex>' */
  digest: string;
  size: number;
}

/** What index.json keeps per image: the public record plus the blobs it is made of. */
export interface StoredImage {
  record: ImageRecord;
  config: BlobDescriptor;
  /** One per entry of record.layers, same order. */
  layerBlobs: BlobDescriptor[];
  /** The manifest blob as received (OCI archives); absent when the image came without one. */
  manifest?: BlobDescriptor;
  /** Unpacked bytes of each layer, when known (pulls and builds record them). */
  layerSizes?: number[];
  /** The image a build step made this one from. */
  parent?: string;
  /** Images a build made it from besides its parent (its other stages). */
  uses?: string[];
  /** Manifest-list digests it was pulled by. */
  digests?: string[];
}
