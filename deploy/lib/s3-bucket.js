// Ensure an S3 bucket exists, with a hand-rolled AWS Signature V4 (path-style),
// so the stack needs no AWS SDK or mc client. Exit 0 when the bucket exists.
// Usage: node s3-bucket.js <endpoint> <region> <accessKey> <secretKey> <bucket>
'use strict';
const crypto = require('node:crypto');
const http = require('node:http');

const [endpoint, region, accessKey, secretKey, bucket] = process.argv.slice(2);
if (!bucket) { console.error('usage: s3-bucket.js endpoint region accessKey secretKey bucket'); process.exit(2); }

const sha256 = (d) => crypto.createHash('sha256').update(d).digest('hex');
const hmac = (k, d) => crypto.createHmac('sha256', k).update(d).digest();

function request(method, body = '') {
  const url = new URL(`/${bucket}`, endpoint);
  const now = new Date();
  const amzDate = now.toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const payloadHash = sha256(body);
  const headers = { host: url.host, 'x-amz-content-sha256': payloadHash, 'x-amz-date': amzDate };
  const names = Object.keys(headers).sort();
  const canonical = [method, url.pathname, '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), payloadHash].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secretKey}`, day), region), 's3'), 'aws4_request');
  const signature = crypto.createHmac('sha256', key).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${accessKey}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  headers['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

(async () => {
  const head = await request('HEAD');
  if (head.status === 200) { console.log(`bucket ${bucket} exists`); return; }
  if (head.status !== 404) throw new Error(`HEAD /${bucket}: HTTP ${head.status}`);
  const body = region === 'us-east-1' ? '' :
    `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>${region}</LocationConstraint></CreateBucketConfiguration>`;
  const put = await request('PUT', body);
  if (put.status === 200 || /BucketAlreadyOwnedByYou/.test(put.text)) { console.log(`bucket ${bucket} created`); return; }
  throw new Error(`PUT /${bucket}: HTTP ${put.status} ${put.text}`);
})().catch((e) => { console.error(e.message); process.exit(1); });
