import { describeWhen } from '../../test/engines';
import { findProgram } from './factory';
import { FfmpegVideoSplitter } from './ffmpeg';
import { describeVideoSplitter } from './video.contract';

const ffmpeg = findProgram('ffmpeg');

describeWhen(!!ffmpeg, 'ffmpeg video splitter', 'needs ffmpeg (`npm run speech:install` installs it)', () => {
  describeVideoSplitter('ffmpeg', () => new FfmpegVideoSplitter(ffmpeg!), ffmpeg!);
});
