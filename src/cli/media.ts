import { readFile, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Media, UserMessage } from '../gen/chatflow/v1/chat';
import type { UploadKind } from '../domain/media-kind';
import { CliError } from './args';
import { formatBytes } from '../domain/format-bytes';
import { makeDir } from '../make-dir';
import { fileFault } from '../domain/errors';

/** Mime type per kind and extension. The server checks the bytes, not only the label. */
const MIME: Record<UploadKind, Record<string, string>> = {
  audio: {
    '.wav': 'audio/wav', '.mp3': 'audio/mpeg', '.ogg': 'audio/ogg', '.oga': 'audio/ogg', '.opus': 'audio/ogg', '.flac': 'audio/flac',
    '.m4a': 'audio/mp4', '.aac': 'audio/aac', '.weba': 'audio/webm', '.webm': 'audio/webm',
  },
  video: {
    '.mp4': 'video/mp4', '.m4v': 'video/mp4', '.mov': 'video/quicktime', '.webm': 'video/webm', '.mkv': 'video/x-matroska',
    '.ogv': 'video/ogg', '.avi': 'video/x-msvideo',
  },
  image: { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp' },
};

/** The kind a file is sent as when none is given (`--file`): video wins for .webm. */
export function kindFromExtension(path: string): UploadKind {
  const ext = extname(path).toLowerCase();
  for (const kind of ['image', 'video', 'audio'] as const) if (MIME[kind][ext]) return kind;
  throw new CliError(`cannot tell the kind of ${path} from its extension; known: ${[...new Set(Object.values(MIME).flatMap(Object.keys))].join(' ')}`);
}

export function mimeFor(kind: UploadKind, path: string): string {
  const ext = extname(path).toLowerCase();
  const mime = MIME[kind][ext];
  if (!mime) throw new CliError(`${path}: not a known ${kind} extension (known: ${Object.keys(MIME[kind]).join(' ')})`);
  return mime;
}

/** A file to send, checked (its kind, a regular file, its size) but not read yet. */
export interface MediaFile {
  kind: UploadKind;
  path: string;
  mimeType: string;
  size: number;
}

/** Checks that `path` can be sent as `kind` without reading it: a typo, a folder or a FIFO is told before anything is sent. */
export async function mediaFile(kind: UploadKind, path: string): Promise<MediaFile> {
  const mimeType = mimeFor(kind, path);
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${path}: ${fileFault(e)}`);
  });
  if (!info.isFile()) throw new CliError(`${path} is not a file`);
  return { kind, path, mimeType, size: info.size };
}

/**
 * The file's bytes as the content of a UserMessage. A file larger than the
 * server takes (its Welcome.max_media_bytes) is refused unread (by its
 * checked size) or once read (it grew since): sent, it would be refused
 * after its upload, or end the stream when over the transport's limit.
 */
export async function readMediaFile(file: MediaFile, maxBytes?: number): Promise<UserMessage['content']> {
  const refusal = tooLarge(file, maxBytes);
  if (refusal) throw new CliError(refusal);
  const data = await readFile(file.path).catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${file.path}: ${fileFault(e)}`);
  });
  // The file may have grown since it was checked: what was read is what would be sent.
  const grown = tooLarge({ ...file, size: data.length }, maxBytes);
  if (grown) throw new CliError(grown);
  const media: Media = { mimeType: file.mimeType, data, url: '', sizeBytes: data.length, durationMs: 0 };
  switch (file.kind) {
    case 'audio':
      return { $case: 'audio', audio: media };
    case 'video':
      return { $case: 'video', video: media };
    case 'image':
      return { $case: 'image', image: media };
  }
}

/** Why the server would not take `file` (over its max_media_bytes), or undefined. */
export function tooLarge(file: MediaFile, maxBytes?: number): string | undefined {
  if (!maxBytes || file.size <= maxBytes) return undefined;
  return `${file.path} is ${formatBytes(file.size, maxBytes)}, more than this server takes (${formatBytes(maxBytes)})`;
}

/** Reads a file into the content of a UserMessage (checked as mediaFile, then read as readMediaFile). */
export async function mediaContent(kind: UploadKind, path: string, maxBytes?: number): Promise<UserMessage['content']> {
  return readMediaFile(await mediaFile(kind, path), maxBytes);
}

const SAVE_EXT: Record<string, string> = { 'audio/wav': '.wav', 'audio/mpeg': '.mp3', 'audio/ogg': '.ogg', 'image/png': '.png', 'image/jpeg': '.jpg', 'image/gif': '.gif', 'image/webp': '.webp' };

/** Downloads a reply's media URL into `<dir>/<messageId><ext>` and returns the path. */
export async function saveMedia(media: Media, messageId: string, dir: string, fallbackExt: string): Promise<string> {
  const res = await fetch(media.url).catch((e: Error) => {
    throw new CliError(`download failed: ${(e.cause as Error | undefined)?.message ?? e.message}`);
  });
  if (!res.ok) throw new CliError(`download failed: HTTP ${res.status} ${res.statusText}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const ext = SAVE_EXT[media.mimeType] ?? fallbackExt;
  const path = join(dir, `${messageId.replace(/[^A-Za-z0-9._-]/g, '_')}${ext}`);
  try {
    await makeDir(dir);
    await writeFile(path, bytes);
  } catch (e) {
    throw new CliError(`cannot save into ${dir}: ${fileFault(e)}; pass --save-dir <a folder you can write>`);
  }
  return path;
}

