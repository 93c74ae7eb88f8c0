export interface StoredMedia {
  bytes: Buffer;
  mimeType: string;
}

/** Object store for media bytes. Events only ever hold keys. */
export interface MediaStore {
  /** `sha256`: the bytes' SHA-256 in hex, when the caller has it already (an upload's is in its event), so it is not computed twice. */
  put(key: string, bytes: Buffer, mimeType: string, sha256?: string): Promise<void>;
  get(key: string): Promise<StoredMedia | null>;
  /** A URL a client can GET without other credentials, valid for ttlMs. */
  url(key: string, ttlMs: number): Promise<string>;
  close(): Promise<void>;
}
