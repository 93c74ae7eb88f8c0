// A 150 KiB durable put (temp file O_DSYNC, rename, folder fsync), argv[2] ms apart: as LocalMediaStore does it (four trips to libuv's pool)
// against one job on a thread of its own doing the same calls synchronously (two crossings). node media-put-trips.js 100
const fs=require('fs'),fsp=fs.promises,path=require('path'),{Worker}=require('worker_threads');
const {constants}=fs;const DSYNC=constants.O_DSYNC;
const root=fs.mkdtempSync(require('os').tmpdir() + '/media-put-trips-');fs.mkdirSync(root+'/.tmp');fs.mkdirSync(root+'/u');
let n=0;
async function asyncPut(bytes){const file=root+'/u/a'+(n++);const tmp=root+'/.tmp/a'+n;
 const [opened,folder]=await Promise.allSettled([fsp.open(tmp,constants.O_WRONLY|constants.O_CREAT|constants.O_EXCL|DSYNC),fsp.open(path.dirname(file),'r')]);
 const h=opened.value;await h.writev([bytes]);await Promise.all([h.close(),fsp.rename(tmp,file)]);await folder.value.sync();void folder.value.close();}
const w=new Worker(`const fs=require('fs'),{parentPort}=require('worker_threads');const c=fs.constants;
parentPort.on('message',({id,file,tmp,dir,bytes})=>{const fd=fs.openSync(tmp,c.O_WRONLY|c.O_CREAT|c.O_EXCL|c.O_DSYNC);fs.writevSync(fd,[bytes]);fs.closeSync(fd);fs.renameSync(tmp,file);const d=fs.openSync(dir,'r');fs.fsyncSync(d);fs.closeSync(d);parentPort.postMessage(id);});`,{eval:true});
const waiting=new Map();w.on('message',id=>{waiting.get(id)();waiting.delete(id);});
let ids=0;function threadPut(bytes){const id=ids++;const file=root+'/u/t'+id;return new Promise(r=>{waiting.set(id,r);w.postMessage({id,file,tmp:root+'/.tmp/t'+id,dir:root+'/u',bytes});});}
(async()=>{const bytes=Buffer.alloc(150*1024,7);const gap=+process.argv[2];const A=[],T=[];
await threadPut(bytes);await asyncPut(bytes);
for(let i=0;i<150;i++){await new Promise(r=>setTimeout(r,gap));let s=performance.now();await asyncPut(bytes);A.push(performance.now()-s);
 await new Promise(r=>setTimeout(r,gap));s=performance.now();await threadPut(bytes);T.push(performance.now()-s);}
const q=a=>{a.sort((x,y)=>x-y);return `p50 ${a[a.length>>1].toFixed(2)} p90 ${a[Math.floor(a.length*.9)].toFixed(2)} p99 ${a[Math.floor(a.length*.99)].toFixed(2)}`};
console.log(`gap ${gap}: async (4 pool trips) ${q(A)} | one thread job ${q(T)}`);await w.terminate();fs.rmSync(root,{recursive:true});})();
