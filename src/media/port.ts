export interface StoredMedia {
  bytes: Buffer;
  mimeType: string;
}

/** Object store for media bytes. Events only ever hold keys. */
export interface MediaStore {
  put(key: string, bytes: Buffer, mimeType: string): Promise<void>;
  get(key: string): Promise<StoredMedia | null>;
  /** A URL a client can GET without other credentials, valid for ttlMs. */
  url(key: string, ttlMs: number): Promise<string>;
  close(): Promise<void>;
}
