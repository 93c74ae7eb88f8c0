// One 400-byte O_DSYNC pwrite at a time, argv[2] ms apart, through fs.promises (as the embedded log writes): p50 / p90 / p99 in ms.
// node dsync-write-gap.js 100
const fs=require('fs'),fsp=fs.promises,path=require('path');
(async()=>{
const d=fs.mkdtempSync(require('os').tmpdir() + '/dsync-gap-');
const h=await fsp.open(path.join(d,'log'),fs.constants.O_RDWR|fs.constants.O_CREAT|fs.constants.O_DSYNC);
const buf=Buffer.alloc(400,1);const A=[];let pos=0;
const sleep=ms=>new Promise(r=>setTimeout(r,ms));
for(let i=0;i<150;i++){await sleep(+process.argv[2]);let s=performance.now();await h.write(buf,0,buf.length,pos);pos+=400;A.push(performance.now()-s);}
const q=a=>{a.sort((x,y)=>x-y);return `p50 ${a[a.length>>1].toFixed(3)} p90 ${a[Math.floor(a.length*.9)].toFixed(3)} p99 ${a[Math.floor(a.length*.99)].toFixed(3)}`};
console.log('gap',process.argv[2],'pool',process.env.UV_THREADPOOL_SIZE||4,'fsp O_DSYNC pwrite',q(A));
await h.close();fs.rmSync(d,{recursive:true});})();
