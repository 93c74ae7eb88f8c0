import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Media, UserMessage } from '../gen/chatflow/v1/chat';
import type { UploadKind } from '../domain/media-kind';
import { CliError } from './args';

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

/** Reads a file into the content of a UserMessage. */
export async function mediaContent(kind: UploadKind, path: string, maxBytes?: number): Promise<UserMessage['content']> {
  const mimeType = mimeFor(kind, path);
  let data: Buffer;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new CliError(`${path} is not a file`);
    if (maxBytes && info.size > maxBytes) throw new CliError(`${path} is ${info.size} bytes; the server accepts at most ${maxBytes}`);
    data = await readFile(path);
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  const media: Media = { mimeType, data, url: '', sizeBytes: data.length, durationMs: 0 };
  switch (kind) {
    case 'audio':
      return { $case: 'audio', audio: media };
    case 'video':
      return { $case: 'video', video: media };
    case 'image':
      return { $case: 'image', image: media };
  }
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
  await mkdir(dir, { recursive: true });
  await writeFile(path, bytes);
  return path;
}
