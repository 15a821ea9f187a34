(function(){
var data=JSON.parse(document.getElementById('span-data').textContent);
var panel=document.getElementById('details');
var fit=document.getElementById('fit');
if(fit){fit.addEventListener('change',function(){document.getElementById('lanes').classList.toggle('fit',fit.checked);
  document.querySelector('.axis').style.visibility=fit.checked?'hidden':'';});}
function el(tag,text,cls){var e=document.createElement(tag);if(text!==undefined)e.textContent=text;if(cls)e.className=cls;return e;}
function show(v){return (typeof v==='object'&&v!==null)?JSON.stringify(v,null,1):String(v);}
function rows(table,pairs){pairs.forEach(function(p){var tr=el('tr');tr.appendChild(el('th',p[0]));tr.appendChild(el('td',show(p[1])));table.appendChild(tr);});}
var selected=null;
function open(i){
  var d=data[i];if(!d)return;
  panel.textContent='';
  var close=el('button','\u00d7');close.title='close';close.onclick=function(){panel.classList.remove('open');};
  panel.appendChild(close);panel.appendChild(el('h3',d.n));
  if(d.h.length||d.r){  // what matters first: the reason, the failure, the restarts, the request that paid
    var lead=el('div',undefined,'lead');
    d.h.forEach(function(line){lead.appendChild(el('p',line));});
    if(d.r)lead.appendChild(el('p','in '+d.r.n));
    panel.appendChild(lead);
  }
  var t=el('table');
  rows(t,[['kind',d.k],['duration',d.d],['starts at','+'+d.o],['trace id',d.t],['span id',d.s],
          ['parent span id',d.p||'(root)'],['status',d.st+(d.sm?': '+d.sm:'')]]);
  t.querySelectorAll('tr').forEach(function(tr,n){if(n>=3&&n<=5)tr.lastChild.className='id';});
  Object.keys(d.a).forEach(function(k){rows(t,[[k,d.a[k]]]);});
  panel.appendChild(t);
  d.e.forEach(function(e){
    panel.appendChild(el('h3','event '+e.n+' at +'+e.o));
    var et=el('table');Object.keys(e.a).forEach(function(k){rows(et,[[k,e.a[k]]]);});panel.appendChild(et);
  });
  if(d.r){
    panel.appendChild(el('h3','in '+d.r.n));
    var rt=el('table');Object.keys(d.r.a).forEach(function(k){rows(rt,[[k,d.r.a[k]]]);});panel.appendChild(rt);
  }
  panel.classList.add('open');
}
var lanes=document.getElementById('lanes');
if(lanes){
  lanes.addEventListener('click',function(ev){var b=ev.target.closest('.bar,.note');if(!b)return;
    var i=b.getAttribute('data-i'),bar=lanes.querySelector('.bar[data-i="'+i+'"]');
    if(selected)selected.classList.remove('sel');selected=bar;if(bar)bar.classList.add('sel');open(+i);});
  lanes.addEventListener('keydown',function(ev){if(ev.key==='Enter'&&ev.target.closest('.bar,.note')){ev.target.click();}});
}
document.addEventListener('keydown',function(ev){if(ev.key==='Escape')panel.classList.remove('open');});
})();
