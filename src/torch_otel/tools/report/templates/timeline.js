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
  var t=el('table');
  rows(t,[['kind',d.k],['duration',d.d],['starts at','+'+d.o+' into the trace'],['trace id',d.t],['span id',d.s],
          ['parent span id',d.p||'(root)'],['status',d.st+(d.sm?': '+d.sm:'')]]);
  Object.keys(d.a).forEach(function(k){rows(t,[[k,d.a[k]]]);});
  panel.appendChild(t);
  d.e.forEach(function(e){
    panel.appendChild(el('h3','event '+e.n+' at +'+e.o));
    var et=el('table');Object.keys(e.a).forEach(function(k){rows(et,[[k,e.a[k]]]);});panel.appendChild(et);
  });
  panel.classList.add('open');
}
var lanes=document.getElementById('lanes');
if(lanes){
  lanes.addEventListener('click',function(ev){var b=ev.target.closest('.bar');if(!b)return;
    if(selected)selected.classList.remove('sel');selected=b;b.classList.add('sel');open(+b.getAttribute('data-i'));});
  lanes.addEventListener('keydown',function(ev){if(ev.key==='Enter'&&ev.target.classList.contains('bar')){ev.target.click();}});
}
document.addEventListener('keydown',function(ev){if(ev.key==='Escape')panel.classList.remove('open');});
})();
