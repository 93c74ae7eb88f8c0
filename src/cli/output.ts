import { clearScreenDown, cursorTo, moveCursor, type Interface } from 'node:readline';
import { createLogUpdate } from 'log-update';
import { formatBlock, type ReplyBoard } from './replies';

/**
 * Where the chat CLI writes for people. Lines (status, pong, history) go out
 * as they come; a reply is shown as one block under its message's label:
 * whole once complete (PlainOutput: pipes, files, scripted runs), or redrawn
 * in place while it streams (LiveOutput: an interactive terminal).
 */
export interface Output {
  line(text: string): void;
  error(text: string): void;
  /** The replies still streaming changed (LiveOutput redraws them). */
  changed(board: ReplyBoard): void;
  /** A message has its reply (or error): its block, whole. */
  done(board: ReplyBoard, block: string): void;
  /** A line that replaces itself (a countdown); undefined removes it. */
  status(text: string | undefined): void;
  close(): void;
}

export class PlainOutput implements Output {
  private statusShown = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}

  line(text: string): void {
    this.clearStatus();
    this.out.write(text + '\n');
  }

  error(text: string): void {
    this.clearStatus();
    process.stderr.write(text + '\n');
  }

  changed(): void {}

  done(_board: ReplyBoard, block: string): void {
    this.line(block);
  }

  /** On a terminal the line is rewritten in place; elsewhere each status is one line. */
  status(text: string | undefined): void {
    if (!this.out.isTTY) {
      if (text !== undefined) this.out.write(text + '\n');
      return;
    }
    this.clearStatus();
    if (text !== undefined) {
      this.out.write(text);
      this.statusShown = true;
    }
  }

  close(): void {
    this.clearStatus();
  }

  private clearStatus(): void {
    if (!this.statusShown) return;
    this.statusShown = false;
    cursorTo(this.out, 0);
    this.out.write('\x1b[2K');
  }
}

/**
 * An interactive terminal: the replies still streaming are drawn (log-update)
 * between the scrollback and the prompt, and redrawn in place on every
 * delta; a finished block moves up into the scrollback, whole.
 */
export class LiveOutput implements Output {
  private readonly render: ReturnType<typeof createLogUpdate>;
  private statusText: string | undefined;
  private board: ReplyBoard | undefined;
  rl?: Interface;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {
    this.render = createLogUpdate(out, { showCursor: true });
  }

  /** Into the scrollback as is (the terminal wraps it, so a copy has no line breaks log-update would add). */
  line(text: string): void {
    this.above(() => {
      this.render.clear();
      this.out.write(text + '\n');
    });
  }

  error(text: string): void {
    this.above(() => {
      this.render.clear();
      process.stderr.write(text + '\n');
    });
  }

  changed(board: ReplyBoard): void {
    this.board = board;
    this.above(() => undefined);
  }

  done(board: ReplyBoard, block: string): void {
    this.board = board;
    this.line(block);
  }

  status(text: string | undefined): void {
    this.statusText = text;
    this.above(() => undefined);
  }

  /**
   * The user pressed Enter: readline echoed "> text" and moved down. The block
   * of the message repeats the text, so the echo is removed and the live area
   * stays right above the prompt.
   */
  enterPressed(line: string, prompt: string): void {
    const columns = this.out.columns || 80;
    const rows = Math.floor((prompt.length + line.length) / columns) + 1;
    moveCursor(this.out, 0, -rows);
    cursorTo(this.out, 0);
    clearScreenDown(this.out);
    this.rl?.prompt(true);
  }

  close(): void {
    this.clearPrompt();
    this.render.clear();
    this.render.done();
    this.rl = undefined;
  }

  /** Clears the prompt, writes, redraws the live area and the prompt (with what the user is typing). */
  private above(write: () => void): void {
    this.clearPrompt();
    write();
    const live = this.live();
    // Nothing streaming: no area at all (log-update would keep a blank line).
    if (live) this.render(live);
    else this.render.clear();
    this.rl?.prompt(true);
  }

  private live(): string {
    const blocks = (this.board?.open() ?? []).map((e) => formatBlock(e, { live: true }));
    if (this.statusText !== undefined) blocks.push(this.statusText);
    return blocks.join('\n');
  }

  private clearPrompt(): void {
    if (!this.rl) return;
    const { rows } = this.rl.getCursorPos();
    moveCursor(this.out, 0, -rows);
    cursorTo(this.out, 0);
    clearScreenDown(this.out);
  }
}
